# Run by `cmake --install` (install(SCRIPT) in dist/CMakeLists.txt), so the paths follow the
# prefix given at install time (`cmake --install build --prefix /usr`), not the configure-time
# one: the unit's ExecStart names the installed binary. GNU rule: prefix /usr puts the
# configuration in /etc, any other prefix in PREFIX/etc. DESTDIR is honoured by file(INSTALL).
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(etc "/etc")
else()
  set(etc "${prefix}/etc")
endif()
set(MXB_BINDIR "${prefix}/bin")
set(MXB_SYSCONFDIR "${etc}")
set(stage "${MXB_DIST_BINARY_DIR}/staged")
configure_file("${MXB_DIST_SOURCE_DIR}/mxburst.service.in" "${stage}/mxburst.service" @ONLY)
configure_file("${MXB_DIST_SOURCE_DIR}/mxburst.sysusers" "${stage}/mxburst.conf" COPYONLY)
configure_file("${MXB_DIST_SOURCE_DIR}/mxburst.logrotate" "${stage}/mxburst" COPYONLY)

file(INSTALL "${stage}/mxburst.service" DESTINATION "${prefix}/lib/systemd/system")
file(INSTALL "${stage}/mxburst.conf" DESTINATION "${prefix}/lib/sysusers.d")
file(INSTALL "${stage}/mxburst" DESTINATION "${etc}/logrotate.d")
# An operator's edited configuration is never overwritten: the new example goes next to it.
foreach(f mxburst.toml bounce-classes.toml)
  if(EXISTS "$ENV{DESTDIR}${etc}/mxburst/${f}")
    configure_file("${MXB_DIST_SOURCE_DIR}/${f}" "${stage}/${f}.dist" COPYONLY)
    file(INSTALL "${stage}/${f}.dist" DESTINATION "${etc}/mxburst")
  else()
    file(INSTALL "${MXB_DIST_SOURCE_DIR}/${f}" DESTINATION "${etc}/mxburst")
  endif()
endforeach()
