/*
 * The server's side of an SCP03 session carried by Amendment B scripts.
 * The agent relays bytes; only the server and the card hold session keys.
 */
#include <string.h>

#include <trustchain/ota.h>

#include "ota/ops_internal.h"

enum { R_START = 0, R_IU_SENT, R_EA_SENT, R_CMD_SENT, R_DONE, R_FAILED };

tc_err tc_ota_remote_init(struct tc_ota_remote *r, const struct tc_scp03_key_provider *keys,
                          const struct tc_scp03_host_config *cfg, const struct tc_apdu *cmds,
                          size_t ncmds)
{
    TC_ENSURE(r != NULL && keys != NULL && cfg != NULL && (ncmds == 0 || cmds != NULL), TC_ERR_ARG);
    TC_ENSURE(cfg->aid != NULL && cfg->aid_len >= 5 && cfg->aid_len <= sizeof r->aid, TC_ERR_ARG);
    TC_ENSURE(ncmds <= TC_OTA_REMOTE_CMDS_MAX, TC_ERR_RANGE);
    memset(r, 0, sizeof *r);
    memcpy(r->aid, cfg->aid, cfg->aid_len);
    r->aid_len = cfg->aid_len;
    struct tc_scp03_host_config c = *cfg;
    c.aid = r->aid;
    c.select = false; /* the SELECT travels in the first script */
    TC_GUARD(tc_scp03_host_init(&r->host, keys, &c));
    r->cmds = cmds;
    r->ncmds = ncmds;
    r->state = R_START;
    return TC_OK;
}

void tc_ota_remote_wipe(struct tc_ota_remote *r)
{
    if (r == NULL)
        return;
    tc_scp03_host_wipe(&r->host);
    tc_memzero(r, sizeof *r);
}

static uint16_t sw_of(const struct tc_ota_bytes *b)
{
    return (uint16_t)((unsigned)b->p[b->len - 2] << 8 | b->p[b->len - 1]);
}

/* The response must answer exactly the n commands of the last script. */
static tc_err responses(const uint8_t *resp, size_t len, size_t n,
                        struct tc_ota_bytes out[TC_OTA_SCRIPT_MAX])
{
    size_t got = 0, executed = 0;
    TC_ENSURE_MSG(resp != NULL, TC_ERR_STATE, "no response script");
    TC_GUARD(tc_ota_response_decode(resp, len, out, &got, &executed));
    TC_ENSURE_MSG(got == n, TC_ERR_FORMAT, "%zu responses to %zu commands", got, n);
    return TC_OK;
}

tc_err ota_script_of(const struct tc_buf *cmds, const size_t *lens, size_t n, struct tc_buf *script)
{
    struct tc_ota_bytes a[3];
    TC_ENSURE(n <= TC_ARRAY_LEN(a), TC_ERR_RANGE);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        a[i].p = cmds->data + off;
        a[i].len = lens[i];
        off += lens[i];
    }
    return tc_ota_script_encode(a, n, script);
}

tc_err ota_select_iu_script(struct tc_scp03_host *h, const uint8_t *aid, size_t aid_len,
                            struct tc_buf *script)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t mem[512];
    struct tc_buf cmds;
    size_t lens[2];
    tc_buf_init_fixed(&cmds, mem, sizeof mem);
    /* GP CS 2.3 §11.9: SELECT by AID, then Amendment D §7.1 INITIALIZE
     * UPDATE with the host challenge. */
    struct tc_apdu sel = {.cla = 0x00,
                          .ins = 0xA4,
                          .p1 = 0x04,
                          .p2 = 0x00,
                          .data = aid,
                          .lc = aid_len,
                          .has_le = true,
                          .le = 256};
    TC_TRY(tc_apdu_encode(&sel, &cmds));
    lens[0] = cmds.len;
    TC_TRY(tc_scp03_host_initialize_update(h, &cmds));
    lens[1] = cmds.len - lens[0];
    TC_TRY(ota_script_of(&cmds, lens, 2, script));
    ret = TC_OK;
out:
    tc_memzero(mem, sizeof mem);
    return ret;
}

static tc_err step(struct tc_ota_remote *r, const uint8_t *resp, size_t resp_len,
                   struct tc_buf *script, bool *done)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_ota_bytes rs[TC_OTA_SCRIPT_MAX];
    uint8_t mem[1024]; /* SELECT + INITIALIZE UPDATE, or one wrapped short command */
    struct tc_buf cmds;
    size_t lens[2];
    tc_buf_init_fixed(&cmds, mem, sizeof mem);
    *done = false;
    switch (r->state) {
    case R_START:
        TC_TRY(ota_select_iu_script(&r->host, r->aid, r->aid_len, script));
        r->state = R_IU_SENT;
        break;
    case R_IU_SENT:
        TC_TRY(responses(resp, resp_len, 2, rs));
        TC_CHECK_MSG(sw_of(&rs[0]) == 0x9000, TC_ERR_CARD, "SELECT of the ISD: SW %04X",
                     sw_of(&rs[0]));
        TC_CHECK_MSG(sw_of(&rs[1]) == 0x9000, TC_ERR_CARD, "INITIALIZE UPDATE: SW %04X",
                     sw_of(&rs[1]));
        /* Card cryptogram verified here, before anything is sent. */
        TC_TRY(tc_scp03_host_external_authenticate(&r->host, rs[1].p, rs[1].len - 2, &cmds));
        lens[0] = cmds.len;
        TC_TRY(ota_script_of(&cmds, lens, 1, script));
        r->state = R_EA_SENT;
        break;
    case R_EA_SENT:
    case R_CMD_SENT:
        TC_TRY(responses(resp, resp_len, 1, rs));
        if (r->state == R_EA_SENT) {
            TC_TRY(tc_scp03_host_authenticated(&r->host, sw_of(&rs[0])));
        } else {
            size_t i = r->next - 1;
            TC_TRY(tc_scp03_host_unwrap(&r->host, rs[0].p, rs[0].len, r->data[i], sizeof r->data[i],
                                        &r->data_len[i], &r->sw[i]));
            /* GP Amendment D: a card whose C-MAC check fails answers
             * 6982 and closes its session; nothing further can follow. */
            TC_CHECK_MSG(r->sw[i] != 0x6982 && r->sw[i] != 0x6988, TC_ERR_AUTH,
                         "the card refused command %zu's secure messaging (SW %04X)", i, r->sw[i]);
        }
        if (r->next == r->ncmds) {
            r->state = R_DONE;
            *done = true;
            break;
        }
        TC_TRY(tc_scp03_host_wrap(&r->host, &r->cmds[r->next], &cmds));
        lens[0] = cmds.len;
        TC_TRY(ota_script_of(&cmds, lens, 1, script));
        r->next++;
        r->state = R_CMD_SENT;
        break;
    default:
        TC_CHECK_MSG(false, TC_ERR_STATE, "remote session is over");
    }
    ret = TC_OK;
out:
    tc_memzero(mem, sizeof mem);
    return ret;
}

tc_err tc_ota_remote_step(struct tc_ota_remote *r, const uint8_t *response, size_t response_len,
                          struct tc_buf *script, bool *done)
{
    TC_ENSURE(r != NULL && script != NULL && done != NULL, TC_ERR_ARG);
    tc_err rc = step(r, response, response_len, script, done);
    if (rc != TC_OK) {
        /* Any failure ends the session: keys wiped, no further step. */
        tc_scp03_host_wipe(&r->host);
        r->state = R_FAILED;
    }
    return rc;
}
