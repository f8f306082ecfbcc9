# MITM proxy fixture and its own test (tests/integration/mitm_proxy.{h,cc}, mitm_proxy_test.cc).
# Included from tests/integration/CMakeLists.txt after mxb_test_fixture is defined:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/mitm.cmake)
# Integration tests that use the proxy link mxb_mitm_proxy.
add_library(mxb_mitm_proxy STATIC ${CMAKE_CURRENT_LIST_DIR}/mitm_proxy.cc)
target_link_libraries(mxb_mitm_proxy PUBLIC absl::status absl::statusor absl::strings absl::time
  Threads::Threads)

add_executable(mxb_mitm_proxy_test ${CMAKE_CURRENT_LIST_DIR}/mitm_proxy_test.cc)
target_link_libraries(mxb_mitm_proxy_test PRIVATE mxb_mitm_proxy mxb_test_fixture mxb_tls
  GTest::gtest_main)
if(TARGET mxburst-sink)  # the test starts it
  add_dependencies(mxb_mitm_proxy_test mxburst-sink)
endif()
gtest_discover_tests(mxb_mitm_proxy_test
  TEST_PREFIX "integration.mitm."
  PROPERTIES ENVIRONMENT "${MXB_TEST_ENV}" LABELS integration TIMEOUT 120
  DISCOVERY_TIMEOUT 30)
