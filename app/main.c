/** @file battlepassd: command line entry point. */
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/commands.h"
#include "app/config.h"
#include "app/log.h"

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out, "usage: battlepassd <command>\n"
                 "\n"
                 "commands:\n"
                 "  serve                          run the XP worker and the HTTP API\n"
                 "  migrate                        apply database migrations\n"
                 "  season import FILE [--starts-now]\n"
                 "                                 import a season definition (JSON);\n"
                 "                                 --starts-now moves its window to start now\n"
                 "  config                         print the effective configuration\n"
                 "  --help, --version\n\n");
    if (out == stdout)
        bp_config_help();
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 64;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("battlepassd %s\n", BP_VERSION);
        return 0;
    }
    bool serve = strcmp(cmd, "serve") == 0;
    bool import = strcmp(cmd, "season") == 0;
    if (import && (argc < 4 || strcmp(argv[2], "import") != 0 ||
                   (argc == 5 && strcmp(argv[4], "--starts-now") != 0) || argc > 5)) {
        fprintf(stderr, "usage: battlepassd season import FILE [--starts-now]\n");
        return 64;
    }
    if (!serve && !import && strcmp(cmd, "migrate") != 0 && strcmp(cmd, "config") != 0) {
        fprintf(stderr, "battlepassd: unknown command '%s'\n\n", cmd);
        usage(stderr);
        return 64;
    }

    bp_config_t cfg;
    char why[512];
    if (bp_config_load(&cfg, env_get, serve, why, sizeof(why)) != BP_OK) {
        fprintf(stderr, "battlepassd: configuration error: %s\n", why);
        return 78; /* EX_CONFIG */
    }
    bp_log_level_t lvl = BP_LOG_INFO;
    (void)bp_log_level_parse(cfg.log_level, &lvl);
    bp_log_set_level(lvl);
    bp_config_warn_unknown(environ);

    /* glibc gives threads that allocate at once arenas of their own (up to 8 per core), and
     * each arena keeps what was freed in it: with the worker's threads (librdkafka's, the
     * loop, the Redis writer, the relay, HTTP, the batch lanes) that was 15 MB of the
     * resident set for nothing. Two arenas: RSS 61 -> 46 MB on the bench's ingest run, no
     * more CPU (docs/benchmarks.md). MALLOC_ARENA_MAX, when set, still decides. */
    if (!getenv("MALLOC_ARENA_MAX"))
        (void)mallopt(M_ARENA_MAX, 2);

    int status;
    if (serve)
        status = bp_cmd_serve(&cfg);
    else if (import)
        status = bp_cmd_season_import(&cfg, argv[3], argc == 5);
    else if (strcmp(cmd, "migrate") == 0)
        status = bp_cmd_migrate(&cfg);
    else {
        bp_config_print(&cfg);
        status = 0;
    }
    bp_config_fini(&cfg);
    return status;
}
