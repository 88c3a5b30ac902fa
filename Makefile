# The test command CI runs (.ci/run) and the README gives.
GO ?= go

.PHONY: build test test-short test-wine vet fuzz bench demo clean

build:
	$(GO) build -o bin/ ./cmd/...

vet:
	gofmt -l . | (! grep .) || (echo "gofmt needed on the files above" && exit 1)
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...
	GOOS=windows $(GO) build ./...

# tools/netlab runs alone: its tests measure latency under storms (the
# orchestrator's p99 with 20,000 hostile connections), which other test
# binaries sharing the 2 cores would distort.
test: vet
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/tools/netlab$$')
	$(GO) test -count=1 -timeout 20m ./tools/netlab
	$(GO) test -count=1 -race -timeout 10m ./journal ./ipc ./effects/... ./cmd/internal/... ./cmd/zlayer-overlayd
	$(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory test-wine

# Each fuzz target for a count of executions after the unit tests (which
# already run every committed seed in testdata/fuzz/), 5 to 13 s each here.
# A count, not a duration: go1.26's fuzzing coordinator can fail a target
# with a bare "context deadline exceeded" when a -fuzztime duration ends
# while a worker is mid-call (golang/go#75804, fixed in go1.27; seen in a
# clean-clone run here), and a count has no deadline to race. Go fuzzes
# one target per invocation; a crasher fails the step and is written to
# the package's testdata/fuzz/<Target>/ to keep as a seed once fixed. New
# interesting inputs stay in the Go build cache, not in the tree. Longer
# runs: make fuzz FUZZTIME=5m (a duration: the race above may then end a
# run that found nothing with that error) or FUZZTIME=5000000x.
FUZZTIME ?=
FUZZ_TARGETS = ipc:FuzzDecodeFrame:80000 ipc:FuzzDecodeRequest:120000 ipc:FuzzSplitObject:120000 \
	projections:FuzzDecide:50000 projections:FuzzDecodeSnapshot:120000 \
	journal:FuzzDecodeEnvelope:120000 effects/dns:FuzzAnswer:100000
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$${rest#*:}; \
		ft="$(FUZZTIME)"; [ -n "$$ft" ] || ft="$${n}x"; \
		echo "fuzz $$name ./$$pkg ($$ft)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $$ft -fuzzminimizetime 5s -parallel 2 ./$$pkg; \
	done

# Windows test binaries under wine (tools/wine/README.md says what wine 8
# cannot do: HCN, Wintun, UDP sockets). setup.sh installs wine and mingw
# once (root, Debian's archive); without wine and without root the step is
# skipped with the reason. The pipe tests run the Windows daemon binary
WINE_PKGS = ./projections ./journal ./cmd/internal/replay ./effects/hcn/... ./effects/wireguard ./cmd/zlayer-overlayd ./cmd/internal/winsvc
test-wine:
	@if ! command -v wine >/dev/null && [ "$$(id -u)" != 0 ]; then \
		echo "test-wine: skipped: wine is not installed and installing it needs root (tools/wine/setup.sh)"; exit 0; fi; \
	set -e; tools/wine/setup.sh; \
	GOOS=windows $(GO) build -o bin/windows/ ./cmd/zlayer-overlayd; \
	GOOS=windows $(GO) test -count=1 -timeout 15m -exec $(CURDIR)/tools/wine/winexec $(WINE_PKGS); \
	GOOS=windows $(GO) test -count=1 -run '^TestSystemResolvers$$' -exec $(CURDIR)/tools/wine/winexec ./effects/dns

test-short:
	$(GO) test -short ./...

bench:
	$(GO) run ./tools/bench

clean:
	rm -rf bin

# A 3-node mesh in network namespaces: the nodes ping each other over the
# overlay, then everything is removed (needs root).
demo:
	$(GO) run ./tools/netlab/cmd/netlab demo
