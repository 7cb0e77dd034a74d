/*
 * Host side through PC/SC (pcsc-lite): real readers and the emulated card
 * behind vsmartcard's vpcd alike. Errors name what the user can fix: no
 * PC/SC service, no reader, no card, card removed.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <winscard.h>

#include <trustchain/codec.h>

#include "net.h"

#define PCSC_READERS_MAX 8192u

struct pcsc_link {
    SCARDCONTEXT ctx;
    SCARDHANDLE card;
    DWORD protocol;
    bool connected;
    char name[160];
};

static tc_err pcsc_fail(LONG rv, const char *what, const char *reader)
{
    const char *r = reader != NULL ? reader : "";
    switch (rv) {
    case SCARD_E_NO_SERVICE:
    case SCARD_E_SERVICE_STOPPED:
        return TC_FAIL(TC_ERR_IO, "%s: the PC/SC service (pcscd) is not running", what);
    case SCARD_E_NO_READERS_AVAILABLE:
        return TC_FAIL(TC_ERR_NOT_FOUND, "%s: no smart-card reader found", what);
    case SCARD_E_UNKNOWN_READER:
        return TC_FAIL(TC_ERR_NOT_FOUND, "%s: no reader named '%s'", what, r);
    case SCARD_E_NO_SMARTCARD:
        return TC_FAIL(TC_ERR_NOT_FOUND, "%s: no card in reader '%s'", what, r);
    case SCARD_W_REMOVED_CARD:
        return TC_FAIL(TC_ERR_IO, "%s: the card was removed from reader '%s'", what, r);
    case SCARD_W_RESET_CARD:
        return TC_FAIL(TC_ERR_IO, "%s: the card in '%s' was reset by another application", what, r);
    case SCARD_W_UNRESPONSIVE_CARD:
    case SCARD_W_UNPOWERED_CARD:
        return TC_FAIL(TC_ERR_IO, "%s: the card in '%s' does not respond", what, r);
    case SCARD_E_NOT_TRANSACTED:
        /* What pcscd reports when the reader lost the card mid-exchange. */
        return TC_FAIL(TC_ERR_IO,
                       "%s: the exchange with the card in '%s' failed (card removed "
                       "or not answering)",
                       what, r);
    case SCARD_E_SHARING_VIOLATION:
        return TC_FAIL(TC_ERR_IO, "%s: reader '%s' is in exclusive use by another application",
                       what, r);
    case SCARD_E_PROTO_MISMATCH:
        return TC_FAIL(TC_ERR_UNSUPPORTED, "%s: the card in '%s' speaks neither T=1 nor T=0", what,
                       r);
    default:
        return TC_FAIL(TC_ERR_IO, "%s: %s (0x%08lX)", what, pcsc_stringify_error(rv),
                       (unsigned long)rv);
    }
}

/* The reader list as a multi-string; *buf is freed by the caller. */
static tc_err list_readers(SCARDCONTEXT ctx, char **buf, DWORD *len)
{
    *buf = NULL;
    *len = 0;
    DWORD n = 0;
    LONG rv = SCardListReaders(ctx, NULL, NULL, &n);
    if (rv != SCARD_S_SUCCESS)
        return pcsc_fail(rv, "listing readers", NULL);
    TC_ENSURE_MSG(n > 0 && n <= PCSC_READERS_MAX, TC_ERR_RANGE, "reader list of %lu bytes",
                  (unsigned long)n);
    char *b = calloc(1, (size_t)n + 1);
    TC_ENSURE(b != NULL, TC_ERR_NOMEM);
    rv = SCardListReaders(ctx, NULL, b, &n);
    if (rv != SCARD_S_SUCCESS) {
        free(b);
        return pcsc_fail(rv, "listing readers", NULL);
    }
    *buf = b;
    *len = n;
    return TC_OK;
}

static bool card_present(SCARDCONTEXT ctx, const char *reader)
{
    SCARD_READERSTATE st;
    memset(&st, 0, sizeof st);
    st.szReader = reader;
    st.dwCurrentState = SCARD_STATE_UNAWARE;
    if (SCardGetStatusChange(ctx, 0, &st, 1) != SCARD_S_SUCCESS)
        return false;
    return (st.dwEventState & SCARD_STATE_PRESENT) != 0;
}

tc_err tc_transport_pcsc_list(struct tc_pcsc_reader *out, size_t max, size_t *count)
{
    TC_ENSURE(count != NULL && (out != NULL || max == 0), TC_ERR_ARG);
    *count = 0;
    SCARDCONTEXT ctx;
    LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
    if (rv != SCARD_S_SUCCESS)
        return pcsc_fail(rv, "PC/SC", NULL);
    char *buf = NULL;
    DWORD len = 0;
    tc_err ret = list_readers(ctx, &buf, &len);
    if (ret == TC_ERR_NOT_FOUND) {
        /* No reader is an empty list here, not an error. */
        tc_error_clear();
        ret = TC_OK;
    }
    for (const char *p = buf; ret == TC_OK && p != NULL && *p != '\0'; p += strlen(p) + 1) {
        if (*count < max) {
            (void)snprintf(out[*count].name, sizeof out[*count].name, "%s", p);
            out[*count].card_present = card_present(ctx, p);
        }
        (*count)++;
    }
    free(buf);
    (void)SCardReleaseContext(ctx);
    return ret;
}

/* Exact name, else the one reader whose name contains `want`, else (want
 * NULL) the one reader with a card. */
static tc_err pick_reader(SCARDCONTEXT ctx, const char *want, char *out, size_t out_size)
{
    char *buf = NULL;
    DWORD len = 0;
    TC_GUARD(list_readers(ctx, &buf, &len));
    tc_err ret = TC_ERR_INTERNAL;
    const char *found = NULL;
    size_t matches = 0;
    for (const char *p = buf; *p != '\0'; p += strlen(p) + 1) {
        if (want != NULL && strcmp(p, want) == 0) {
            found = p;
            matches = 1;
            break;
        }
        bool hit = want != NULL ? strstr(p, want) != NULL : card_present(ctx, p);
        if (hit) {
            found = p;
            matches++;
        }
    }
    if (want == NULL) {
        TC_CHECK_MSG(matches > 0, TC_ERR_NOT_FOUND, "no reader has a card in it");
        TC_CHECK_MSG(matches == 1, TC_ERR_ARG, "%zu readers have a card: name one with --reader",
                     matches);
    } else {
        TC_CHECK_MSG(matches > 0, TC_ERR_NOT_FOUND, "no reader matches '%s'", want);
        TC_CHECK_MSG(matches == 1, TC_ERR_ARG, "%zu readers match '%s': give more of the name",
                     matches, want);
    }
    TC_CHECK_MSG(strlen(found) < out_size, TC_ERR_RANGE, "reader name too long");
    (void)snprintf(out, out_size, "%s", found);
    ret = TC_OK;
out:
    free(buf);
    return ret;
}

static tc_err raw_transmit(struct pcsc_link *l, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                           size_t resp_size, size_t *resp_len)
{
    const SCARD_IO_REQUEST *pci = l->protocol == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
    DWORD n = (DWORD)resp_size;
    LONG rv = SCardTransmit(l->card, pci, cmd, (DWORD)cmd_len, NULL, resp, &n);
    if (rv != SCARD_S_SUCCESS)
        return pcsc_fail(rv, "transmit", l->name);
    /* vpcd reports success with an empty response when the card vanished
     * mid-exchange: a link failure, not a malformed answer. */
    TC_ENSURE_MSG(n >= 2, TC_ERR_IO,
                  "transmit: the card in '%s' answered %lu byte(s) and no status word (card "
                  "removed or not answering)",
                  l->name, (unsigned long)n);
    *resp_len = (size_t)n;
    return TC_OK;
}

/* The link moves bytes only: 61xx (GET RESPONSE) and 6Cxx (wrong Le) are
 * answered by the caller, which knows whether the command was wrapped
 * (re-sending a wrapped command would be a replay). */
static tc_err pcsc_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                            size_t resp_size, size_t *resp_len)
{
    struct pcsc_link *l = ctx;
    TC_ENSURE(l != NULL && l->connected, TC_ERR_STATE);
    TC_ENSURE(cmd != NULL && cmd_len >= 4 && cmd_len <= TC_APDU_MAX_ENCODED && resp_size >= 2,
              TC_ERR_ARG);
    return raw_transmit(l, cmd, cmd_len, resp, resp_size, resp_len);
}

static tc_err pcsc_reset(void *ctx, uint8_t *atr, size_t atr_size, size_t *atr_len)
{
    struct pcsc_link *l = ctx;
    TC_ENSURE(l != NULL && l->connected, TC_ERR_STATE);
    DWORD proto = 0;
    /* The reset ends our transaction; a new one starts on the reset card. */
    (void)SCardEndTransaction(l->card, SCARD_LEAVE_CARD);
    LONG rv = SCardReconnect(l->card, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T1 | SCARD_PROTOCOL_T0,
                             SCARD_RESET_CARD, &proto);
    if (rv != SCARD_S_SUCCESS)
        return pcsc_fail(rv, "reset", l->name);
    l->protocol = proto;
    rv = SCardBeginTransaction(l->card);
    if (rv != SCARD_S_SUCCESS)
        return pcsc_fail(rv, "reset", l->name);
    uint8_t buf[MAX_ATR_SIZE];
    DWORD blen = sizeof buf;
    DWORD state = 0;
    DWORD rlen = 0;
    rv = SCardStatus(l->card, NULL, &rlen, &state, &proto, buf, &blen);
    if (rv != SCARD_S_SUCCESS)
        return pcsc_fail(rv, "reading the ATR", l->name);
    TC_ENSURE(blen <= atr_size, TC_ERR_SPACE);
    memcpy(atr, buf, blen);
    *atr_len = blen;
    return TC_OK;
}

static void pcsc_close(void *ctx)
{
    struct pcsc_link *l = ctx;
    if (l == NULL)
        return;
    if (l->connected) {
        (void)SCardEndTransaction(l->card, SCARD_LEAVE_CARD);
        (void)SCardDisconnect(l->card, SCARD_LEAVE_CARD);
    }
    (void)SCardReleaseContext(l->ctx);
    free(l);
}

tc_err tc_transport_pcsc_open(struct tc_transport *t, const char *reader)
{
    TC_ENSURE(t != NULL, TC_ERR_ARG);
    memset(t, 0, sizeof *t);
    tc_err ret = TC_ERR_INTERNAL;
    struct pcsc_link *l = calloc(1, sizeof *l);
    TC_ENSURE(l != NULL, TC_ERR_NOMEM);
    LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &l->ctx);
    if (rv != SCARD_S_SUCCESS) {
        free(l);
        return pcsc_fail(rv, "PC/SC", NULL);
    }
    char name[sizeof l->name];
    TC_TRY(pick_reader(l->ctx, reader, name, sizeof name));
    (void)snprintf(l->name, sizeof l->name, "%s", name);
    /* T=1 first (what our card and most GlobalPlatform cards offer), T=0 as
     * the fallback for cards that have nothing else. */
    rv = SCardConnect(l->ctx, name, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T1, &l->card, &l->protocol);
    if (rv == SCARD_E_PROTO_MISMATCH)
        rv = SCardConnect(l->ctx, name, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0, &l->card,
                          &l->protocol);
    if (rv != SCARD_S_SUCCESS) {
        ret = pcsc_fail(rv, "connect", name);
        goto out;
    }
    l->connected = true;
    /* A secure channel is a sequence of commands no other application may
     * interleave with: hold a PC/SC transaction for the link's lifetime
     * (shared mode, so other applications may still wait their turn). */
    rv = SCardBeginTransaction(l->card);
    if (rv != SCARD_S_SUCCESS) {
        ret = pcsc_fail(rv, "begin transaction", name);
        goto out;
    }
    t->ctx = l;
    t->name = l->name;
    t->transmit = pcsc_transmit;
    t->reset = pcsc_reset;
    t->close = pcsc_close;
    l = NULL;
    ret = TC_OK;
out:
    if (l != NULL)
        pcsc_close(l);
    return ret;
}
