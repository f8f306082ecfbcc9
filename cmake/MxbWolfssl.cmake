# wolfSSL for mxburst: the target mxb::wolfssl, from one of two builds (MXB_WOLFSSL):
#   system  - Debian's libwolfssl-dev (OPENSSL_ALL, SESSION_CERTS, no AES-NI assembly)
#   bundled - Debian's wolfSSL source package built by tools/build-wolfssl.sh at configure time
#             with AES-NI/AVX2 and SP-math assembly and without the structures we do not use,
#             installed as a static library into MXB_WOLFSSL_PREFIX (skipped when already built
#             with the same flags)
set(MXB_WOLFSSL "system" CACHE STRING "wolfSSL build to link: system or bundled")
set_property(CACHE MXB_WOLFSSL PROPERTY STRINGS system bundled)

if(MXB_WOLFSSL STREQUAL "system")
  pkg_check_modules(WOLFSSL REQUIRED IMPORTED_TARGET wolfssl)
  add_library(mxb_wolfssl INTERFACE)
  target_link_libraries(mxb_wolfssl INTERFACE PkgConfig::WOLFSSL)
elseif(MXB_WOLFSSL STREQUAL "bundled")
  set(MXB_WOLFSSL_PREFIX "${CMAKE_BINARY_DIR}/wolfssl" CACHE PATH
      "Where tools/build-wolfssl.sh installs the bundled wolfSSL (MXB_WOLFSSL=bundled)")
  set(_mxb_wolfssl_script "${CMAKE_SOURCE_DIR}/tools/build-wolfssl.sh")
  # Re-run the build script whenever it changes (its flags live there).
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_mxb_wolfssl_script}")
  message(STATUS "wolfSSL: bundled build in ${MXB_WOLFSSL_PREFIX} (tools/build-wolfssl.sh; "
                 "the first build takes a few minutes)")
  execute_process(COMMAND "${_mxb_wolfssl_script}" "${MXB_WOLFSSL_PREFIX}"
                  RESULT_VARIABLE _mxb_wolfssl_rc)
  if(NOT _mxb_wolfssl_rc EQUAL 0)
    message(FATAL_ERROR "MXB_WOLFSSL=bundled: tools/build-wolfssl.sh ${MXB_WOLFSSL_PREFIX} "
                        "failed (exit ${_mxb_wolfssl_rc}); run tools/setup.sh, or configure "
                        "with -DMXB_WOLFSSL=system")
  endif()
  add_library(mxb_wolfssl_static STATIC IMPORTED)
  set_target_properties(mxb_wolfssl_static PROPERTIES
    IMPORTED_LOCATION "${MXB_WOLFSSL_PREFIX}/lib/libwolfssl.a"
    INTERFACE_INCLUDE_DIRECTORIES "${MXB_WOLFSSL_PREFIX}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;m")
  add_library(mxb_wolfssl INTERFACE)
  target_link_libraries(mxb_wolfssl INTERFACE mxb_wolfssl_static)
  # Lets tests tell which build they run against.
  target_compile_definitions(mxb_wolfssl INTERFACE MXB_WOLFSSL_BUNDLED=1)
else()
  message(FATAL_ERROR "MXB_WOLFSSL must be \"bundled\" or \"system\", got \"${MXB_WOLFSSL}\"")
endif()
add_library(mxb::wolfssl ALIAS mxb_wolfssl)
