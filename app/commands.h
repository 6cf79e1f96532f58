/** @file The subcommands of battlepassd: serve, migrate, season import. */
#ifndef BP_COMMANDS_H
#define BP_COMMANDS_H

#include "app/config.h"

/** Run the worker and the HTTP API until SIGTERM/SIGINT. @return the exit status. */
int bp_cmd_serve(const bp_config_t *cfg);
/** Apply pending migrations from <schemas>/sql. @return the exit status. */
int bp_cmd_migrate(const bp_config_t *cfg);
/** Import a season definition file; @p starts_now shifts its window to start now.
 *  @return the exit status (0 ok, 1 invalid file or conflict, 2 database unreachable). */
int bp_cmd_season_import(const bp_config_t *cfg, const char *path, int starts_now);

#endif
