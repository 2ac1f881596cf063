PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test typecheck install bench bench-connect bench-connect-calls bench-restart bench-scale fuzz fuzz-ws fuzz-pusher fuzz-sse fuzz-http soak chaos chaos-redis chaos-node slow-clients clean

# Reinstalled whenever either project's metadata changes (the client is a
# separate distribution in client/, installed editable beside the server).
$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./client -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/stagewire serve

# Types first (server, handlers and models; the client SDK strictly), then the tests.
test: $(STAMP) typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

typecheck: $(STAMP)
	$(BIN)/mypy
	cd client && ../$(BIN)/mypy

# Fan-out beside the bare reference server (bench/bare_server.py), interleaved in one run.
BENCH_ARGS ?= --servers bare stagewire --subscribers 1000 5000 --seconds 5
bench: $(STAMP)
	$(BIN)/python -m bench.fanout $(BENCH_ARGS)

# Connects+auths+subscribes per second beside the bare prototype; a 10,000-client restart.
bench-connect: $(STAMP)
	$(BIN)/python -m bench.connect --clients 3000 --inflight 100 --rounds 5

# Function calls per connect under cProfile: a cost figure that does not drift with the machine.
bench-connect-calls: $(STAMP)
	$(BIN)/python -m bench.connect_calls --clients 1000 --top 15

bench-restart: $(STAMP)
	$(BIN)/python -m bench.restart --clients 10000

# Scale-out: memory broker, 1 node + Redis, 2 nodes + Redis (subscribers in C, bench/subscribers.c);
# then every pub/sub connection killed under load. Each on a redis-server of its own.
bench-scale: $(STAMP)
	$(BIN)/python -m bench.redis_broker scale --subscribers 1000 5000 --seconds 5
	$(BIN)/python -m bench.redis_broker blip --subscribers 1000 --seconds 6 --kill-after 2

# Fuzzing at volume (make test runs the same harnesses at a small one).
FUZZ_RUNS ?= 1000000
FUZZ_EXAMPLES ?= 2000

fuzz: fuzz-ws fuzz-pusher fuzz-sse fuzz-http

fuzz-ws: $(STAMP)
	$(BIN)/python -m bench.fuzz_ws -atheris_runs=$(FUZZ_RUNS) -max_len=4096

fuzz-pusher: $(STAMP)
	$(BIN)/python -m bench.fuzz_pusher -atheris_runs=$(FUZZ_RUNS) -max_len=4096

fuzz-sse: $(STAMP)
	$(BIN)/python -m bench.fuzz_sse -atheris_runs=$(FUZZ_RUNS) -max_len=1024

fuzz-http: $(STAMP)
	$(BIN)/python -m bench.fuzz_http --max-examples $(FUZZ_EXAMPLES)

# 30 minutes of connect/subscribe/publish/disconnect churn; fails if RSS, tasks or files grow.
SOAK_ARGS ?= --minutes 30
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Fault scenarios of docs/reliability.md, each about a minute, each with a private redis-server.
chaos: chaos-redis chaos-node slow-clients

chaos-redis: $(STAMP)
	$(BIN)/python -m bench.chaos_redis --subscribers 1000

chaos-node: $(STAMP)
	$(BIN)/python -m bench.chaos_node --subscribers 1000 --presence-ttl 6

slow-clients: $(STAMP)
	$(BIN)/python -m bench.slow_clients --slow 1000

clean:
	rm -rf $(VENV) data .pytest_cache
