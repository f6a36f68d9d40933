/* event_bus.h: in-process, synchronous domain event bus.
 *
 * Handlers run on the publisher's thread, inside whatever unit of work the publisher holds, so
 * their writes commit or roll back with it. Subscribe at start-up only; publishing is then
 * read-only and thread-safe. The payload is borrowed for the duration of the call. */
#pragma once

#include "core/err.h"

#define EVENT_BUS_MAX 16

struct sp_error;
typedef int (*event_handler_fn)(void *ctx, const void *payload, struct sp_error *err);

struct event_bus {
    int n;
    struct {
        int type;
        event_handler_fn fn;
        void *ctx;
    } subs[EVENT_BUS_MAX];
};

void event_bus_init(struct event_bus *bus);
/* SP_ETOOLARGE when the table is full. */
int event_bus_subscribe(struct event_bus *bus, int type, event_handler_fn fn,
                        void *ctx) SP_MUST_CHECK;
/* Calls each handler of `type` in subscription order; stops at and returns the first error. */
int event_bus_publish(const struct event_bus *bus, int type, const void *payload,
                      struct sp_error *err) SP_MUST_CHECK;
