/*
 * Names of the instructions ISO/IEC 7816-4 (the interindustry commands)
 * and GlobalPlatform Card Specification 2.3 (§11, its commands) define, for traces and the command
 * line. A name is a label only: nothing decides on it.
 */
#include <trustchain/codec.h>

struct ins_name {
    uint8_t ins;
    const char *iso; /* interindustry class (b8 of CLA clear) */
    const char *gp;  /* proprietary class: GlobalPlatform commands */
};

static const struct ins_name ins_names[] = {
    {0x04, "DEACTIVATE FILE", NULL},
    {0x0C, "ERASE RECORD(S)", NULL},
    {0x0E, "ERASE BINARY", NULL},
    {0x0F, "ERASE BINARY", NULL},
    {0x10, "PERFORM SCQL OPERATION", NULL},
    {0x12, "PERFORM TRANSACTION OPERATION", NULL},
    {0x14, "PERFORM USER OPERATION", NULL},
    {0x20, "VERIFY", NULL},
    {0x21, "VERIFY", NULL},
    {0x22, "MANAGE SECURITY ENVIRONMENT", NULL},
    {0x24, "CHANGE REFERENCE DATA", NULL},
    {0x26, "DISABLE VERIFICATION REQUIREMENT", NULL},
    {0x28, "ENABLE VERIFICATION REQUIREMENT", NULL},
    {0x2A, "PERFORM SECURITY OPERATION", "PERFORM SECURITY OPERATION"},
    {0x2C, "RESET RETRY COUNTER", NULL},
    {0x44, "ACTIVATE FILE", NULL},
    {0x46, "GENERATE ASYMMETRIC KEY PAIR", NULL},
    {0x47, "GENERATE ASYMMETRIC KEY PAIR", NULL},
    {0x50, NULL, "INITIALIZE UPDATE"},
    {0x70, "MANAGE CHANNEL", "MANAGE CHANNEL"},
    {0x78, NULL, "END R-MAC SESSION"},
    {0x7A, NULL, "BEGIN R-MAC SESSION"},
    {0x82, "EXTERNAL AUTHENTICATE", "EXTERNAL AUTHENTICATE"},
    {0x84, "GET CHALLENGE", NULL},
    {0x86, "GENERAL AUTHENTICATE", NULL},
    {0x87, "GENERAL AUTHENTICATE", NULL},
    {0x88, "INTERNAL AUTHENTICATE", "INTERNAL AUTHENTICATE"},
    {0xA0, "SEARCH BINARY", NULL},
    {0xA1, "SEARCH BINARY", NULL},
    {0xA2, "SEARCH RECORD", NULL},
    {0xA4, "SELECT", "SELECT"},
    {0xB0, "READ BINARY", NULL},
    {0xB1, "READ BINARY", NULL},
    {0xB2, "READ RECORD(S)", NULL},
    {0xB3, "READ RECORD(S)", NULL},
    {0xC0, "GET RESPONSE", "GET RESPONSE"},
    {0xC2, "ENVELOPE", NULL},
    {0xC3, "ENVELOPE", NULL},
    {0xCA, "GET DATA", "GET DATA"},
    {0xCB, "GET DATA", "GET DATA"},
    {0xD0, "WRITE BINARY", NULL},
    {0xD1, "WRITE BINARY", NULL},
    {0xD2, "WRITE RECORD", NULL},
    {0xD6, "UPDATE BINARY", NULL},
    {0xD7, "UPDATE BINARY", NULL},
    {0xD8, NULL, "PUT KEY"},
    {0xDA, "PUT DATA", NULL},
    {0xDB, "PUT DATA", NULL},
    {0xDC, "UPDATE RECORD", NULL},
    {0xDD, "UPDATE RECORD", NULL},
    {0xE0, "CREATE FILE", NULL},
    {0xE2, "APPEND RECORD", "STORE DATA"},
    {0xE4, "DELETE FILE", "DELETE"},
    {0xE6, "TERMINATE DF", "INSTALL"},
    {0xE8, "TERMINATE EF", "LOAD"},
    {0xF0, NULL, "SET STATUS"},
    {0xF2, NULL, "GET STATUS"},
    {0xFE, "TERMINATE CARD USAGE", NULL},
};

const char *tc_apdu_ins_name(uint8_t cla, uint8_t ins)
{
    bool proprietary = (cla & 0x80u) != 0 && cla != 0xFFu;
    for (size_t i = 0; i < TC_ARRAY_LEN(ins_names); i++) {
        if (ins_names[i].ins != ins)
            continue;
        /* GlobalPlatform commands use a proprietary CLA (GP Card
         * Specification 2.3 §11.1.4); an interindustry CLA means the ISO
         * command, and each falls back to the other's name. */
        const char *first = proprietary ? ins_names[i].gp : ins_names[i].iso;
        const char *other = proprietary ? ins_names[i].iso : ins_names[i].gp;
        return first != NULL ? first : other;
    }
    return NULL;
}
