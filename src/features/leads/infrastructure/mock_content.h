/* mock_content.h: the mock AI content generator: canned welcome messages and intent-driven
 * answers (pricing, demo/meeting, not interested, stop), no network. Stateless, thread-safe. */
#pragma once

struct content_gen;

/* A static generator; never freed. */
struct content_gen *mock_content_gen(void);
