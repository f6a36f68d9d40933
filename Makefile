# SalesPad: short wrapper over CMake/CTest. `make run` and `make test` are all a new user needs.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all build run test test-unit test-asan valgrind bench lint fmt deps clean

all: build

deps:
	@scripts/deps.sh build

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS)

# Starts the service on the embedded default (SQLite file salespad.db in this directory).
run: build
	./$(BUILD)/salespad serve

# Everything CI runs: lint, unit + HTTP + integration tests, then the same suite under
# ASan+UBSan (but the packaging check, the BullMQ interop runs and the dashboard's browser test,
# which spend their time in apt-cache, Node and Chromium rather than in our C, and the
# integration scripts' PostgreSQL and Redis variants, whose C beyond the SQLite variant is the
# drivers and queues that unit_pg and unit_redis run under ASan: all these run once, in the
# first pass), then valgrind on the unit and HTTP tests.
test:
	@scripts/deps.sh test
	$(MAKE) build
	scripts/lint.sh
	cd $(BUILD) && ctest --output-on-failure -j2
	$(MAKE) test-asan
	$(MAKE) valgrind

# Unit and HTTP tests only: no sockets to other processes, seconds. (The PostgreSQL variants
# *_pg and the Redis queue tests *_redis need servers: ctest runs them as unit_pg, unit_redis.)
test-unit: build
	./$(BUILD)/t -x '*_pg' -x '*_redis' unit_ http_

test-asan:
	@scripts/deps.sh test
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j2 \
	  -E "^(packaging|interop_bullmq[0-9]+|npm_browser|browser_dashboard|integration_(pg|redis)_.*)$$"

# valgrind on the unit and HTTP tests, the PostgreSQL variants (*_pg) and the Redis queue tests
# (*_redis) included: they run on throwaway servers (tests/pg/pgserver.sh,
# tests/redis/redisserver.sh), stopped whatever the outcome.
valgrind: build
	bash tests/pg/pgserver.sh start $(BUILD)/pg-valgrind >/dev/null
	bash tests/redis/redisserver.sh start $(BUILD)/redis-valgrind >/dev/null || \
	  { bash tests/pg/pgserver.sh stop $(BUILD)/pg-valgrind; exit 1; }
	SALESPAD_PG_URL_FILE=$(abspath $(BUILD))/pg-valgrind/url \
	SALESPAD_REDIS_URL_FILE=$(abspath $(BUILD))/redis-valgrind/url \
	  valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect,possible \
	  --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=1 \
	  --trace-children=no ./$(BUILD)/t unit_ http_; \
	  rc=$$?; bash tests/pg/pgserver.sh stop $(BUILD)/pg-valgrind; \
	  bash tests/redis/redisserver.sh stop $(BUILD)/redis-valgrind; exit $$rc

bench:
	@scripts/deps.sh bench
	$(MAKE) build
	scripts/bench.sh

lint:
	scripts/lint.sh

fmt:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
