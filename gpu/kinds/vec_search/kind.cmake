# vec.search: OpenBLAS, linked explicitly where the build finds it (Debian:
# libopenblas-dev, installed by .ci/deps). The machine's default libblas.so may be
# the reference BLAS, an order of magnitude slower, so the kind never goes through
# it. Without OpenBLAS (the GPU machine builds gpu/ from compilers alone) the
# kind's own kernel does every product.
find_path(KILN_OPENBLAS_INCLUDE_DIR NAMES cblas.h openblas_config.h
  PATH_SUFFIXES openblas-pthread openblas openblas-openmp openblas-serial
                x86_64-linux-gnu/openblas-pthread aarch64-linux-gnu/openblas-pthread)
find_library(KILN_OPENBLAS_LIBRARY NAMES openblas)
if(KILN_OPENBLAS_INCLUDE_DIR AND KILN_OPENBLAS_LIBRARY)
  set(KIND_LIBRARIES ${KILN_OPENBLAS_LIBRARY})
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/gemm.c PROPERTIES
    COMPILE_DEFINITIONS KILN_VEC_OPENBLAS=1
    INCLUDE_DIRECTORIES ${KILN_OPENBLAS_INCLUDE_DIR})
  message(STATUS "vec.search: OpenBLAS ${KILN_OPENBLAS_LIBRARY}")
else()
  message(STATUS "vec.search: no OpenBLAS found; its own kernel does every product")
endif()

# The 64-byte vectors of the own kernel are passed only inside inlined code: the
# ABI note about them does not apply.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/gemm.c PROPERTIES COMPILE_OPTIONS -Wno-psabi)
# Scores are float64 sums rounded once (collection.h, vec_score): no compiler may
# fuse them into FMAs, or the CPU and the GPU would round differently.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/cpu.c ${CMAKE_CURRENT_LIST_DIR}/collection.c
  ${CMAKE_CURRENT_LIST_DIR}/kind.c ${CMAKE_CURRENT_LIST_DIR}/select.c PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
