# vec.search: a tuned BLAS linked explicitly where the build finds it: BLIS, single-
# threaded (Debian: libblis-serial-dev, installed by .ci/deps). The machine's default
# libblas.so may be the reference BLAS, an order of magnitude slower, so the kind
# never goes through it. Not OpenBLAS: it starts a thread pool when it is loaded and
# pulls in libgfortran and libquadmath, whose printf hooks slow every printf in
# kilnd; the search runs its own threads, one product each. Without BLIS (the GPU
# machine builds gpu/ from compilers alone) the kind's own kernel does every product.
find_path(KILN_BLIS_INCLUDE_DIR NAMES cblas.h PATH_SUFFIXES x86_64-linux-gnu/blis-serial aarch64-linux-gnu/blis-serial
  NO_DEFAULT_PATH PATHS /usr/include)
find_library(KILN_BLIS_LIBRARY NAMES blis PATHS /usr/lib/x86_64-linux-gnu/blis-serial /usr/lib/aarch64-linux-gnu/blis-serial
  NO_DEFAULT_PATH)
if(KILN_BLIS_INCLUDE_DIR AND KILN_BLIS_LIBRARY)
  set(KIND_LIBRARIES ${KILN_BLIS_LIBRARY})
  # -isystem: BLIS's cblas.h defines static functions it does not use.
  set(KILN_VEC_GEMM_OPTIONS -isystem ${KILN_BLIS_INCLUDE_DIR})
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/gemm.c PROPERTIES COMPILE_DEFINITIONS KILN_VEC_BLAS=1)
  message(STATUS "vec.search: BLIS ${KILN_BLIS_LIBRARY}")
else()
  message(STATUS "vec.search: no BLIS found; its own kernel does every product")
endif()

# The 64-byte vectors of the own kernel are passed only inside inlined code: the
# ABI note about them does not apply.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/gemm.c PROPERTIES COMPILE_OPTIONS "-Wno-psabi;${KILN_VEC_GEMM_OPTIONS}")
# Scores are float64 sums rounded once (collection.h, vec_score): no compiler may
# fuse them into FMAs, or the CPU and the GPU would round differently.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/cpu.c ${CMAKE_CURRENT_LIST_DIR}/collection.c
  ${CMAKE_CURRENT_LIST_DIR}/kind.c ${CMAKE_CURRENT_LIST_DIR}/select.c PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
