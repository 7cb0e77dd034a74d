/*
 * trustchain: one program, one subcommand table. Each group lives in its own
 * file (cli/<group>.c) and parses its own options.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc > 1 && !tc_cli_wants_help(argc, argv))
        return tc_cli_usage_error("version takes no arguments");
    (void)printf("trustchain %s\n", tc_version());
    return TC_EXIT_OK;
}

static const struct tc_cli_cmd groups[] = {
    {"version", "print the version", cmd_version},
    {"apdu", "decode command and response APDUs (ISO/IEC 7816-4)", tc_cli_apdu},
    {"tlv", "decode BER-TLV data objects", tc_cli_tlv},
    {"gp", "drive a GlobalPlatform card over SCP03 (PC/SC, TCP or a card image)", tc_cli_gp},
    {"hsm", "the manufacturing HSM over PKCS#11: init, info, keys, generate, import", tc_cli_hsm},
    {"se", "emulated secure elements: create, show, serve card images", tc_cli_se},
    {"pki", "fleet PKI: root ceremony, batch CAs, device certificates, CRLs, verify", tc_cli_pki},
    {"audit", "the verifiable log: checkpoints, proofs, verify, rebuild, tiles", tc_cli_audit},
    {"device", "device state at any time with proofs, history, lists, certificates", tc_cli_device},
    {"init", "create a workspace: config, HSM token and keys, registry and audit log", tc_cli_init},
    {"line", "the manufacturing line: provision a batch of cards", tc_cli_line},
    {"demo", "init, root ceremony, batch CA, 1,000 emulated devices, proofs, verify", tc_cli_demo},
    {"ota", "over-the-air service: the TLS 1.3 mutual-auth HTTPS endpoint for devices", tc_cli_ota},
};

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--version") == 0)
        return cmd_version(1, argv + 1);
    if (argc < 2)
        return tc_cli_usage_error("no command given (see 'trustchain --help')");
    int rc = tc_cli_dispatch("trustchain", groups, TC_ARRAY_LEN(groups), argc - 1, argv + 1);
    if (fflush(stdout) != 0 || ferror(stdout))
        return tc_cli_usage_error("cannot write to standard output") == 0 ? 0 : TC_EXIT_FAIL;
    return rc;
}
