/* main.c: the salespad command line: serve | worker | migrate | check-providers | routes,
 * --help, --version. */
#include "app/app.h"
#include "app/config.h"

#include <stdio.h>
#include <string.h>

static void
usage(FILE *f)
{
    fprintf(
        f, "usage: salespad <command> [options]\n"
           "\n"
           "SalesPad captures leads over HTTP, sends their welcome messages through a durable\n"
           "job queue with retries, and answers prospects' replies on the same channel.\n"
           "\n"
           "Commands:\n"
           "  serve [--no-worker]  HTTP API, with the queue workers in-process unless --no-worker\n"
           "  worker               queue workers only (run several against one database)\n"
           "  migrate              apply database migrations and exit\n"
           "  check-providers      connect and authenticate to the configured email, WhatsApp\n"
           "                       and AI providers, sending nothing; one line each; exit 1\n"
           "                       if one fails\n"
           "  routes               print the HTTP routes, one \"METHOD /pattern\" a line\n"
           "                       (docs/openapi.json describes each; GET /openapi.json)\n"
           "\n"
           "Options:\n"
           "  --print-config       print the effective settings (secrets redacted) and exit\n"
           "  -h, --help           this help\n"
           "  -V, --version        print the version\n"
           "\n");
    config_print_help(f);
    fprintf(f, "\nSignals: SIGTERM or SIGINT stop accepting, finish in-flight work and exit 0.\n");
}

int
main(int argc, char **argv)
{
    struct config cfg;
    struct sp_error err = {0};
    enum app_mode mode;
    int print_config = 0, no_worker = 0, check = 0, routes = 0, rc;
    const char *cmd = NULL;

    for (int i = 1; i < argc; i++) {
        int takes_value = 0;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0 ||
            strcmp(argv[i], "help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("salespad %s\n", SP_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--print-config") == 0) {
            print_config = 1;
        } else if (strcmp(argv[i], "--no-worker") == 0) {
            no_worker = 1;
        } else if (config_is_flag(argv[i], &takes_value)) {
            i += takes_value;
        } else if (argv[i][0] != '-' && cmd == NULL) {
            cmd = argv[i];
        } else {
            fprintf(stderr, "salespad: unknown argument '%s' (see salespad --help)\n", argv[i]);
            return 2;
        }
    }
    if (cmd == NULL && !print_config) {
        usage(stderr);
        return 2;
    }
    if (cmd == NULL || strcmp(cmd, "serve") == 0) {
        mode = no_worker ? APP_SERVE_API : APP_SERVE;
    } else if (strcmp(cmd, "worker") == 0) {
        mode = APP_WORKER;
    } else if (strcmp(cmd, "migrate") == 0) {
        mode = APP_MIGRATE;
    } else if (strcmp(cmd, "check-providers") == 0) {
        mode = APP_MIGRATE; /* unused */
        check = 1;
    } else if (strcmp(cmd, "routes") == 0) {
        mode = APP_MIGRATE; /* unused */
        routes = 1;
    } else {
        fprintf(stderr, "salespad: unknown command '%s' (see salespad --help)\n", cmd);
        return 2;
    }
    if (no_worker && mode != APP_SERVE_API) {
        fprintf(stderr, "salespad: --no-worker only applies to serve\n");
        return 2;
    }
    rc = config_load(&cfg, argc, argv, 1, &err);
    if (rc != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    if (print_config) {
        config_print(&cfg, stdout);
        config_cleanup(&cfg);
        return 0;
    }
    log_setup(cfg.log_level, cfg.log_format);
    if (routes)
        rc = app_print_routes(&cfg, stdout);
    else
        rc = check ? app_check_providers(&cfg, stdout) : app_run(&cfg, mode);
    config_cleanup(&cfg);
    return rc;
}
