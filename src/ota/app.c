/*
 * One remote SCP03 session per device, driven by the Amendment B dialog:
 * the server's tc_ota_app. Session state lives in a fixed table of slots
 * keyed by EID; a slot is wiped (session keys) and its key provider
 * released when the session ends, completed or not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <trustchain/ota.h>

struct slot {
    bool used;
    char eid[TC_PKI_EID_DIGITS + 1];
    struct tc_scp03_key_provider kp;
    void *token;
    struct tc_ota_remote r;
};

struct tc_ota_scp03_app {
    struct tc_ota_scp03_app_config cfg;
    uint8_t aid[16];
    struct slot *slots;
};

static struct slot *find(struct tc_ota_scp03_app *a, const char *eid)
{
    for (size_t i = 0; i < a->cfg.max_sessions; i++)
        if (a->slots[i].used && strcmp(a->slots[i].eid, eid) == 0)
            return &a->slots[i];
    return NULL;
}

static void release(struct tc_ota_scp03_app *a, struct slot *s)
{
    if (s == NULL || !s->used)
        return;
    tc_ota_remote_wipe(&s->r);
    if (a->cfg.release != NULL)
        a->cfg.release(a->cfg.ctx, s->token);
    memset(s, 0, sizeof *s);
}

static tc_err app_next(void *ctx, const struct tc_ota_admin_in *in, struct tc_buf *script)
{
    struct tc_ota_scp03_app *a = ctx;
    struct slot *s = find(a, in->eid);
    bool done = false;
    tc_err rc;
    if (in->step == 0) {
        release(a, s); /* a new dialog restarts the device's session */
        s = NULL;
        for (size_t i = 0; i < a->cfg.max_sessions && s == NULL; i++)
            if (!a->slots[i].used)
                s = &a->slots[i];
        TC_ENSURE_MSG(s != NULL, TC_ERR_NOMEM, "%zu SCP03 sessions open", a->cfg.max_sessions);
        s->used = true;
        (void)snprintf(s->eid, sizeof s->eid, "%s", in->eid);
        rc = a->cfg.keys(a->cfg.ctx, in->eid, &s->kp, &s->token);
        if (rc == TC_OK)
            rc = tc_ota_remote_init(&s->r, &s->kp, &a->cfg.host, a->cfg.cmds, a->cfg.ncmds);
        if (rc == TC_OK)
            rc = tc_ota_remote_step(&s->r, NULL, 0, script, &done);
    } else {
        TC_ENSURE_MSG(s != NULL, TC_ERR_STATE, "no SCP03 session for %s", in->eid);
        if (in->status != TC_OTA_STATUS_OK || in->response == NULL)
            rc = TC_FAIL(TC_ERR_CARD, "the agent could not run the script (status %d)",
                         (int)in->status);
        else
            rc = tc_ota_remote_step(&s->r, in->response, in->response_len, script, &done);
    }
    if (rc != TC_OK || done) {
        if (a->cfg.done != NULL)
            a->cfg.done(a->cfg.ctx, in->eid, &s->r, rc);
        tc_buf_reset(script); /* done: an empty script ends the dialog (204) */
        release(a, s);
    }
    return rc;
}

static void app_end(void *ctx, const char *eid, bool completed)
{
    struct tc_ota_scp03_app *a = ctx;
    (void)completed;
    release(a, find(a, eid));
}

tc_err tc_ota_scp03_app_new(const struct tc_ota_scp03_app_config *cfg,
                            struct tc_ota_scp03_app **out, struct tc_ota_app *app)
{
    TC_ENSURE(cfg != NULL && out != NULL && app != NULL && cfg->keys != NULL &&
                  cfg->max_sessions > 0 && cfg->host.aid != NULL &&
                  cfg->host.aid_len <= sizeof((struct tc_ota_scp03_app *)0)->aid,
              TC_ERR_ARG);
    *out = NULL;
    struct tc_ota_scp03_app *a = calloc(1, sizeof *a);
    TC_ENSURE(a != NULL, TC_ERR_NOMEM);
    a->slots = calloc(cfg->max_sessions, sizeof *a->slots);
    if (a->slots == NULL) {
        free(a);
        return TC_FAIL(TC_ERR_NOMEM, "no memory for %zu sessions", cfg->max_sessions);
    }
    a->cfg = *cfg;
    memcpy(a->aid, cfg->host.aid, cfg->host.aid_len);
    a->cfg.host.aid = a->aid;
    *app = (struct tc_ota_app){.ctx = a, .next = app_next, .end = app_end};
    *out = a;
    return TC_OK;
}

void tc_ota_scp03_app_free(struct tc_ota_scp03_app *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->cfg.max_sessions; i++)
        release(a, &a->slots[i]);
    free(a->slots);
    free(a);
}
