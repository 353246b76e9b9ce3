# The two commands of the README, plus the pieces they are made of.
#   make run   - install what is missing, build, start kilnd on http://127.0.0.1:8080/
#   make test  - install what is missing, build (plain and ASan+UBSan), run every test

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
STATE      ?= $(CURDIR)/state
LISTEN     ?= 127.0.0.1:8080
CMAKE_ARGS ?=

.PHONY: run test deps build build-asan packages unit-test clean

deps:
	@.ci/deps

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# A local default: loopback only, state under the checkout, auth off.
run: build
	@mkdir -p $(STATE)
	@echo "kilnd: open http://$(LISTEN)/ in a browser (WebSocket API at ws://$(LISTEN)/ws); Ctrl-C stops it"
	KILN_SERVER_LISTEN=$(LISTEN) KILN_STORE_PATH=$(STATE) KILN_STORE_MAP_SIZE_GB=16 \
	KILN_AUTH_REQUIRED=false KILN_AUTH_TOKENS_FILE=$(STATE)/tokens \
	KILN_SERVER_WEB_ROOT=$(CURDIR)/web_ui KILN_LOG_TARGET=stderr \
	$(BUILD)/daemon/kilnd

# Every test on the normal build (which also leaves the .deb and .rpm packages in
# $(BUILD)), then every test but the package tests again under AddressSanitizer and
# UndefinedBehaviorSanitizer.
test: build build-asan
	cd $(BUILD) && ctest --output-on-failure -j 2
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j 2 -LE packaging

# kiln_*.deb, kiln-cuda_*.deb and the two .rpm files, in $(BUILD).
packages: build
	cmake --build $(BUILD) --target package

unit-test: build
	cd $(BUILD) && ctest --output-on-failure -L unit -R unit/

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
