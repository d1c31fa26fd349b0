# Install rules: headers, the exported kdloss::kdloss target, a package config and a pkg-config file.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(KDLOSS_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/kdloss" CACHE STRING
    "Where the kdloss CMake package files are installed")

install(TARGETS kdloss EXPORT kdlossTargets FILE_SET HEADERS FILE_SET torch_adapter)
install(EXPORT kdlossTargets NAMESPACE kdloss:: DESTINATION "${KDLOSS_CMAKEDIR}")
configure_package_config_file(cmake/kdlossConfig.cmake.in
  "${PROJECT_BINARY_DIR}/kdlossConfig.cmake" INSTALL_DESTINATION "${KDLOSS_CMAKEDIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/kdlossConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/kdlossConfig.cmake" "${PROJECT_BINARY_DIR}/kdlossConfigVersion.cmake"
  DESTINATION "${KDLOSS_CMAKEDIR}")

configure_file(cmake/kdloss.pc.in "${PROJECT_BINARY_DIR}/kdloss.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/kdloss.pc" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")
