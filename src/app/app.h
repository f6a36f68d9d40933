/* app.h: the composition root: builds the process from a configuration (database, queue,
 * senders, content generator, event bus, HTTP server, workers), runs it until SIGTERM/SIGINT
 * and tears it down in reverse order. The only module that names concrete adapters. */
#pragma once

#include "app/config.h"

enum app_mode {
    APP_SERVE = 0, /* HTTP API + in-process workers */
    APP_SERVE_API, /* HTTP API only (--no-worker) */
    APP_WORKER,    /* workers only */
    APP_MIGRATE,   /* apply migrations and exit */
};

/* Runs the process; returns the exit status (0 after a clean shutdown). */
int app_run(const struct config *cfg, enum app_mode mode);
