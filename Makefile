# The two commands of the README, plus the pieces they are made of.
#   make run   - install what is missing, build, start kilnd on http://127.0.0.1:8080/
#   make test  - install what is missing, build (plain and ASan+UBSan), run every test

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 10
JOBS       ?= $(shell nproc)
STATE      ?= $(CURDIR)/state
LISTEN     ?= 127.0.0.1:8080
CMAKE_ARGS ?=

.PHONY: run test deps build build-asan fuzz packages unit-test clean

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

# The libFuzzer targets (clang, fuzzer + ASan + UBSan), each run for FUZZ_SECONDS.
fuzz: deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKILN_FUZZ=ON \
	  -DKILN_FUZZ_SECONDS=$(FUZZ_SECONDS) -DCMAKE_CUDA_COMPILER=CMAKE_CUDA_COMPILER-NOTFOUND \
	  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" $(CMAKE_ARGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_proto fuzz_frame fuzz_config fuzz_params fuzz_model fuzz_reply fuzz_json
	cd $(FUZZ_BUILD) && ctest --output-on-failure -L fuzz

# The fuzz targets briefly, every test on the normal build (which also leaves the
# .deb and .rpm packages in $(BUILD)), then every test again under AddressSanitizer
# and UndefinedBehaviorSanitizer but the package tests and the check of the GPU
# test cases (label cases: a 3 GB collection, 10 GB under the sanitizers).
test: build build-asan fuzz
	cd $(BUILD) && ctest --output-on-failure -j 2
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j 2 -LE 'packaging|cases'

# kiln_*.deb, kiln-cuda_*.deb and the two .rpm files, in $(BUILD).
packages: build
	cmake --build $(BUILD) --target package

unit-test: build
	cd $(BUILD) && ctest --output-on-failure -L unit -R unit/

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
