/*
 * Test fixture: a small card OS around the SCP03 card side (key store in
 * RAM, one logical channel, an echo applet) reachable through a struct
 * tc_transport, so the host side can be driven end to end in-process.
 */
#ifndef TC_TESTS_SCP03_LOOP_H
#define TC_TESTS_SCP03_LOOP_H

#include <trustchain/scp03.h>

#define LOOP_KEYSETS 4

struct test_store {
    struct tc_scp03_keyset sets[LOOP_KEYSETS];
    size_t n;
    uint32_t seq[LOOP_KEYSETS];
    uint32_t failures[LOOP_KEYSETS];
};

void test_store_init(struct test_store *st, struct tc_scp03_card_store *ops);
void test_store_add(struct test_store *st, const struct tc_scp03_keyset *ks, uint32_t seq);
struct tc_scp03_keyset *test_store_find(struct test_store *st, uint8_t kvn);

/* Deterministic "random" for card challenges: a counter. */
tc_err test_random(void *ctx, uint8_t *out, size_t n);

struct loop {
    struct tc_scp03_card card;
    struct tc_scp03_card_config cfg;
    struct tc_scp03_card_store ops;
    struct test_store store;
    struct tc_scp03_chain chain;
    uint8_t chain_buf[70000];
    uint8_t plain[70000];
    uint8_t out[70000];
    /* T=0 style: response data beyond this many bytes waits for GET
     * RESPONSE (0 = everything at once). */
    size_t t0_chunk;
    uint8_t pending[70000];
    size_t pending_len, pending_off;
    uint16_t pending_sw;
    uint8_t random_state;
    unsigned commands;  /* APDUs received */
    unsigned fail_at;   /* the link breaks (TC_ERR_IO) at this command number; 0 = never */
    uint16_t select_sw; /* answer to SELECT (9000 after loop_init) */
    uint16_t last_sw;   /* status of the last processed command */
    struct tc_transport t;
};

/* i-parameter, channel-independent; the SD AID is A000000151000000. */
void loop_init(struct loop *l, uint8_t i_param);
void loop_add_keys(struct loop *l, uint8_t kvn, size_t key_len, uint8_t seed, uint32_t seq);
/* Fill a keyset with deterministic keys from a seed. */
void make_keyset(struct tc_scp03_keyset *ks, uint8_t kvn, size_t key_len, uint8_t seed);

extern const uint8_t LOOP_AID[8];

#endif
