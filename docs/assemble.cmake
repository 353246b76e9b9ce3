# Assembles one manual page: cmake -DTEMPLATE=PAGE.in -DOUTPUT=PAGE -DVERSION=X.Y.Z
#   [-DFRAGMENT=FILE] -P assemble.cmake
#
# The template is hand-written roff. "@VERSION@" becomes the version. With FRAGMENT
# (what kiln-docgen printed from a table in the code), the template's one line
# "@GENERATED@" is replaced by it, and each line `.\" @OUTPUTS KIND@` of the fragment
# by the template's block for that kind:
#
#   .\" @BEGIN OUTPUTS KIND@
#   ...roff...
#   .\" @END OUTPUTS@
#
# (the block is taken out of where it stands in the template). A kind without a block
# gets a sentence saying where its outputs are found; a block for a kind that does
# not exist is an error, so a renamed or removed kind cannot leave stale text behind.

cmake_minimum_required(VERSION 3.25) # new policies: no @VAR@ expansion in the strings below

foreach(var TEMPLATE OUTPUT VERSION)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "assemble.cmake: -D${var}= is required")
  endif()
endforeach()

file(READ "${TEMPLATE}" page)

if(DEFINED FRAGMENT)
  file(READ "${FRAGMENT}" fragment)

  # Take every OUTPUTS block out of the template.
  set(blocks "")
  while(TRUE)
    string(FIND "${page}" "@BEGIN OUTPUTS " begin)
    if(begin LESS 0)
      break()
    endif()
    string(SUBSTRING "${page}" 0 ${begin} before)
    string(FIND "${before}" "\n" line_start REVERSE)
    math(EXPR line_start "${line_start} + 1")
    math(EXPR name_start "${begin} + 15")
    string(SUBSTRING "${page}" ${name_start} -1 rest)
    string(FIND "${rest}" "@" name_len)
    string(SUBSTRING "${rest}" 0 ${name_len} name)
    string(FIND "${rest}" "\n" body_start)
    math(EXPR body_start "${body_start} + 1")
    string(SUBSTRING "${rest}" ${body_start} -1 rest)
    string(FIND "${rest}" "@END OUTPUTS@" end)
    if(end LESS 0)
      message(FATAL_ERROR "${TEMPLATE}: the OUTPUTS block of ${name} has no @END OUTPUTS@ line")
    endif()
    string(SUBSTRING "${rest}" 0 ${end} body)
    string(FIND "${body}" "\n" body_end REVERSE)
    math(EXPR body_end "${body_end} + 1")
    string(SUBSTRING "${body}" 0 ${body_end} body)
    string(SUBSTRING "${rest}" ${end} -1 after)
    string(FIND "${after}" "\n" after_start)
    math(EXPR after_start "${after_start} + 1")
    string(SUBSTRING "${after}" ${after_start} -1 after)
    string(SUBSTRING "${page}" 0 ${line_start} head)
    set(page "${head}${after}")
    set("block_${name}" "${body}")
    list(APPEND blocks "${name}")
  endwhile()

  # Put each block under its kind.
  string(REGEX MATCHALL "@OUTPUTS [^@\n]+@" markers "${fragment}")
  foreach(marker IN LISTS markers)
    string(REGEX REPLACE "^@OUTPUTS (.*)@$" "\\1" name "${marker}")
    if(DEFINED "block_${name}")
      set(text "${block_${name}}")
      list(REMOVE_ITEM blocks "${name}")
    else()
      set(text ".PP\nOutputs: its \\fBdone\\fR message lists the scalars (\\fBresult\\fR) and the \\fBparts\\fR it sends.\n")
    endif()
    string(REPLACE ".\\\" ${marker}\n" "${text}" fragment "${fragment}")
  endforeach()
  if(blocks)
    message(FATAL_ERROR "${TEMPLATE}: OUTPUTS blocks for kinds that do not exist: ${blocks}")
  endif()

  string(FIND "${page}" "@GENERATED@\n" at)
  if(at LESS 0)
    message(FATAL_ERROR "${TEMPLATE}: no @GENERATED@ line for the generated part")
  endif()
  string(REPLACE "@GENERATED@\n" "${fragment}" page "${page}")
endif()

string(REPLACE "@VERSION@" "${VERSION}" page "${page}")
file(WRITE "${OUTPUT}.tmp" "${page}")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
