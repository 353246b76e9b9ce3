# Packages: `cpack -G "DEB;RPM"` in the build tree, or `cmake --build BUILD --target package`,
# writes kiln_V-R_ARCH.deb, kiln-V-R.ARCH.rpm and, when the CUDA plugin is built,
# kiln-cuda_V-R_ARCH.deb and kiln-cuda-V-R.ARCH.rpm into the build tree.
# Components: "kiln" (daemon, CLI, bench, web UI, config, units) and "cuda" (the plugin).
# Library dependencies come from the binaries (dpkg-shlibdeps, rpm's autoreq).
set(CPACK_GENERATOR "DEB;RPM")
set(CPACK_PACKAGE_NAME kiln)
set(CPACK_PACKAGE_VENDOR "kiln")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${KILN_PACKAGE_CONTACT}")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://example.org/kiln")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Paths compiled into kilnd (the plugin directory) follow CMAKE_INSTALL_PREFIX.
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(WARNING "Packages need -DCMAKE_INSTALL_PREFIX=/usr (now ${CMAKE_INSTALL_PREFIX}): kilnd would look for "
                  "the CUDA plugin under ${CMAKE_INSTALL_PREFIX} while the package puts it under /usr")
endif()
set(CPACK_STRIP_FILES ON)
set(CPACK_THREADS 0)
set(CPACK_SOURCE_IGNORE_FILES "/build[^/]*/;/\\\\.git/;/state/")

set(CPACK_COMPONENTS_ALL kiln)
if(TARGET kiln-cuda)
  list(APPEND CPACK_COMPONENTS_ALL cuda)
endif()
set(CPACK_COMPONENTS_GROUPING IGNORE) # one package per component
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_RPM_COMPONENT_INSTALL ON)
set(_kiln_pkg_dir ${PROJECT_SOURCE_DIR}/packaging)
set(_kiln_version "${PROJECT_VERSION}-${KILN_PACKAGE_RELEASE}")

# ---- Debian ----
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${KILN_PACKAGE_RELEASE})
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_KILN_PACKAGE_NAME kiln)
# The first line of a Debian description is its synopsis. CPackDeb would put the
# project-wide summary above it unless that summary is CPack's default text.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CPACK_PACKAGE_NAME} built using CMake")
set(CPACK_DEBIAN_KILN_DESCRIPTION "GPU compute appliance
kilnd takes compute jobs over a WebSocket API, runs them on CUDA kernels
(with the kiln-cuda package) or CPU threads, and keeps every job and result
in LMDB. This package has the daemon, kilnctl, the web UI, the CPU backend,
the default configuration and the systemd units.")
# systemd-sysusers and systemd-tmpfiles run in postinst.
set(CPACK_DEBIAN_KILN_PACKAGE_DEPENDS "systemd")
# libwebsockets' libev plugin (dlopened, so not found by shlibdeps): kilnd's epoll
# loop; without it kilnd serves from libwebsockets' poll() loop (daemon/server.c).
set(CPACK_DEBIAN_KILN_PACKAGE_RECOMMENDS "libwebsockets-evlib-ev")
set(CPACK_DEBIAN_KILN_PACKAGE_CONTROL_EXTRA
  "${_kiln_pkg_dir}/deb/postinst;${_kiln_pkg_dir}/deb/prerm;${_kiln_pkg_dir}/deb/postrm;${_kiln_pkg_dir}/deb/conffiles")
set(CPACK_DEBIAN_KILN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_DEBIAN_CUDA_PACKAGE_NAME kiln-cuda)
set(CPACK_DEBIAN_CUDA_DESCRIPTION "GPU compute appliance (CUDA backend)
The plugin kilnd loads at start to run jobs on NVIDIA GPUs; without a
usable driver kilnd keeps running them on the CPU.")
set(CPACK_DEBIAN_CUDA_PACKAGE_DEPENDS "kiln (= ${_kiln_version})")
set(CPACK_DEBIAN_CUDA_PACKAGE_RECOMMENDS "libcuda1")

# ---- RPM ----
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_RELEASE ${KILN_PACKAGE_RELEASE})
set(CPACK_RPM_PACKAGE_LICENSE "Proprietary")
set(CPACK_RPM_PACKAGE_GROUP "System Environment/Daemons")
set(CPACK_RPM_PACKAGE_AUTOREQ ON)
set(CPACK_RPM_PACKAGE_AUTOPROV ON)
set(CPACK_RPM_KILN_PACKAGE_NAME kiln)
set(CPACK_RPM_KILN_PACKAGE_SUMMARY "GPU compute appliance")
set(CPACK_RPM_KILN_PACKAGE_DESCRIPTION "kilnd takes compute jobs over a WebSocket API, runs them on CUDA kernels
(with kiln-cuda) or CPU threads, and keeps every job and result in LMDB.")
set(CPACK_RPM_KILN_USER_FILELIST "%config(noreplace) /etc/kiln/kiln.conf")
set(CPACK_RPM_KILN_PACKAGE_REQUIRES_POST "systemd")
set(CPACK_RPM_KILN_POST_INSTALL_SCRIPT_FILE ${_kiln_pkg_dir}/rpm/post.sh)
set(CPACK_RPM_KILN_PRE_UNINSTALL_SCRIPT_FILE ${_kiln_pkg_dir}/rpm/preun.sh)
set(CPACK_RPM_KILN_POST_UNINSTALL_SCRIPT_FILE ${_kiln_pkg_dir}/rpm/postun.sh)
set(CPACK_RPM_CUDA_PACKAGE_NAME kiln-cuda)
set(CPACK_RPM_CUDA_PACKAGE_SUMMARY "GPU compute appliance: CUDA backend")
set(CPACK_RPM_CUDA_PACKAGE_DESCRIPTION "The plugin kilnd loads at start to run jobs on NVIDIA GPUs.")
set(CPACK_RPM_CUDA_PACKAGE_REQUIRES "kiln = ${_kiln_version}")
set(CPACK_RPM_CUDA_PACKAGE_SUGGESTS "libcuda.so.1()(64bit)")
# Directories owned by the filesystem and systemd packages.
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
  /etc/kiln
  /usr/lib/systemd /usr/lib/systemd/system /usr/lib/systemd/system-preset
  /usr/lib/sysusers.d /usr/lib/tmpfiles.d /usr/share/doc
  /usr/share/man /usr/share/man/man1 /usr/share/man/man5 /usr/share/man/man7 /usr/share/man/man8
  /usr/${CMAKE_INSTALL_LIBDIR})

include(CPack)
