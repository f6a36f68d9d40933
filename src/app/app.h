/* app.h: the composition root: builds the process from a configuration (database, queue,
 * senders, content generator, event bus, HTTP server, workers), runs it until SIGTERM/SIGINT
 * and tears it down in reverse order. The only module that names concrete adapters. */
#pragma once

#include "app/config.h"

#include <stdio.h>

enum app_mode {
    APP_SERVE = 0, /* HTTP API + in-process workers */
    APP_SERVE_API, /* HTTP API only (--no-worker) */
    APP_WORKER,    /* workers only */
    APP_MIGRATE,   /* apply migrations and exit */
};

/* Runs the process; returns the exit status (0 after a clean shutdown). */
int app_run(const struct config *cfg, enum app_mode mode);

/* `salespad routes`: builds the HTTP route table as `serve` does, without opening anything,
 * and prints one "METHOD /pattern" line per route to f, in the table's order (`:name` segments
 * as the router writes them). The tests compare it with the API description. Returns 0. */
int app_print_routes(const struct config *cfg, FILE *f);

/* `salespad check-providers`: for each channel and the AI, connects and authenticates to the
 * configured real provider without sending or generating anything, and prints one line per
 * provider to f ("mock (nothing to check)" for mocks). Returns the exit status: 0 when every
 * configured real provider answered, 1 when one failed, 2 for a setting its adapter refuses. */
int app_check_providers(const struct config *cfg, FILE *f);
