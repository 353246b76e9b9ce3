# image.relief: the decoders are Debian's libspng (PNG) and libjpeg-turbo (JPEG);
# zlib checks PNG chunk CRCs. Included by gpu/kinds/kinds.cmake with `dir` set to
# this folder.
#
# A machine without their -dev packages (the GPU machine builds gpu/ on its own)
# still builds the kind: a codec that was not found is left out, and images in
# that format are refused with a message saying so (decode.c, RELIEF_NO_PNG /
# RELIEF_NO_JPEG).
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(RELIEF_SPNG QUIET IMPORTED_TARGET GLOBAL spng)
  pkg_check_modules(RELIEF_JPEG QUIET IMPORTED_TARGET GLOBAL libjpeg)
  pkg_check_modules(RELIEF_ZLIB QUIET IMPORTED_TARGET GLOBAL zlib)
endif()

set(KIND_SOURCES kind.c cpu.c decode.c heightfield.c mesh.c simplify.c)
set(KIND_LIBRARIES "")
set(relief_missing "")
if(TARGET PkgConfig::RELIEF_SPNG AND TARGET PkgConfig::RELIEF_ZLIB)
  list(APPEND KIND_SOURCES decode_png.c)
  list(APPEND KIND_LIBRARIES PkgConfig::RELIEF_SPNG PkgConfig::RELIEF_ZLIB)
else()
  list(APPEND relief_missing RELIEF_NO_PNG)
  message(WARNING "image.relief: libspng or zlib not found (libspng-dev, zlib1g-dev): PNG images will be refused")
endif()
if(TARGET PkgConfig::RELIEF_JPEG)
  list(APPEND KIND_SOURCES decode_jpeg.c)
  list(APPEND KIND_LIBRARIES PkgConfig::RELIEF_JPEG)
else()
  list(APPEND relief_missing RELIEF_NO_JPEG)
  message(WARNING "image.relief: libjpeg not found (libjpeg62-turbo-dev): JPEG images will be refused")
endif()
if(relief_missing)
  set_source_files_properties(${dir}/decode.c ${dir}/tests.c PROPERTIES COMPILE_DEFINITIONS "${relief_missing}")
endif()
# The CPU path must round like the CUDA kernels (relief_math.h): no fused
# multiply-add contraction, whatever -march a build uses.
set_source_files_properties(${dir}/heightfield.c ${dir}/mesh.c ${dir}/cpu.c ${dir}/simplify.c
  PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
