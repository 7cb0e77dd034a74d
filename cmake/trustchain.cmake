# Shared build rules: warnings, sanitizers, and helpers for modules and tests.

set(TC_WARNINGS
  -Wall -Wextra -Werror -Wpedantic -Wshadow -Wconversion -Wsign-conversion
  -Wcast-qual -Wformat=2 -Wundef -Wstrict-prototypes -Wmissing-prototypes
  -Wpointer-arith -Wvla -Wwrite-strings -Wnull-dereference -Wimplicit-fallthrough
  -Wswitch-default)

add_compile_definitions(_POSIX_C_SOURCE=200809L _DEFAULT_SOURCE
  OPENSSL_API_COMPAT=30000 OPENSSL_NO_DEPRECATED)
add_compile_options(-fstack-protector-strong -fno-strict-aliasing)
if(CMAKE_BUILD_TYPE MATCHES "Rel")
  add_compile_definitions(_FORTIFY_SOURCE=2)
endif()

if(TC_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined -fno-sanitize-recover=all)
endif()
if(TC_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined
    -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

# tc_module(NAME <m> SOURCES <files...> DEPS <modules...> [LIBS <libs...>])
# One static library per module: tc_<m>. DEPS are other trustchain modules.
function(tc_module)
  cmake_parse_arguments(M "" "NAME" "SOURCES;DEPS;LIBS" ${ARGN})
  add_library(tc_${M_NAME} STATIC ${M_SOURCES})
  target_compile_options(tc_${M_NAME} PRIVATE ${TC_WARNINGS})
  target_include_directories(tc_${M_NAME}
    PUBLIC ${CMAKE_SOURCE_DIR}/include
    PRIVATE ${CMAKE_SOURCE_DIR}/src)
  set(deps)
  foreach(d IN LISTS M_DEPS)
    list(APPEND deps tc_${d})
  endforeach()
  target_link_libraries(tc_${M_NAME} PUBLIC ${deps} ${M_LIBS})
  set_property(GLOBAL APPEND PROPERTY TC_MODULE_LIBS tc_${M_NAME})
endfunction()

# tc_test(NAME <t> SOURCES <files...> LIBS <targets...> [LABELS <l...>] [VALGRIND])
# A test binary run by CTest from the source tree's tests/ directory, so that
# vectors are found as tests/vectors/<module>/<file>.
function(tc_test)
  cmake_parse_arguments(T "VALGRIND" "NAME" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_compile_options(${T_NAME} PRIVATE ${TC_WARNINGS})
  target_include_directories(${T_NAME} PRIVATE ${CMAKE_SOURCE_DIR}/tests
    ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS})
  add_test(NAME ${T_NAME} COMMAND ${T_NAME}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests)
  set_tests_properties(${T_NAME} PROPERTIES
    LABELS "${T_LABELS}"
    ENVIRONMENT "TC_BIN_DIR=${CMAKE_BINARY_DIR}")
  if(TC_VALGRIND AND T_VALGRIND)
    add_test(NAME ${T_NAME}_valgrind
      COMMAND valgrind --quiet --error-exitcode=99 --leak-check=full
        --errors-for-leak-kinds=definite --track-origins=yes
        $<TARGET_FILE:${T_NAME}>
      WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests)
    set_tests_properties(${T_NAME}_valgrind PROPERTIES
      LABELS "valgrind;${T_LABELS}"
      ENVIRONMENT "TC_BIN_DIR=${CMAKE_BINARY_DIR};TC_UNDER_VALGRIND=1")
  endif()
endfunction()
