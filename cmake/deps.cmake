# The libraries dsrt builds against, as targets the rest of the build links:
#   dsrt::openblas  OpenBLAS, its OpenMP build (DSRT_OPENBLAS_LIBRARY: the .so file)
#   dsrt::hdf5      libhdf5 alone (checkpoints), with its headers
#   dsrt::cmocka    CMocka (tests only; dsrt_find_cmocka())
#
# Two ways to find them:
#  - the machine's own packages (Debian: libopenblas-openmp-dev, libhdf5-dev,
#    libcmocka-dev) through pkg-config and FindHDF5: the default;
#  - -DDSRT_DEPS_ROOT=DIR: a tree of those packages unpacked under DIR (DIR/usr/...),
#    searched alone, with no pkg-config. scripts/gpu-check.sh --bundle makes one
#    from Debian's .deb files so that a machine without Debian's packages (the
#    lent GPU machine) builds the same code against the same libraries.
set(DSRT_DEPS_ROOT "" CACHE PATH "Unpacked Debian packages to build against instead of the system's")

function(_dsrt_imported name lib inc)
  add_library(${name} INTERFACE IMPORTED GLOBAL)
  set_target_properties(${name} PROPERTIES INTERFACE_LINK_LIBRARIES "${lib}")
  # SYSTEM: their headers' warnings are not ours
  set_target_properties(${name} PROPERTIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${inc}"
                                           INTERFACE_INCLUDE_DIRECTORIES "${inc}")
endfunction()

if(DSRT_DEPS_ROOT)
  if(NOT CMAKE_LIBRARY_ARCHITECTURE)
    set(CMAKE_LIBRARY_ARCHITECTURE x86_64-linux-gnu)
  endif()
  set(_usr "${DSRT_DEPS_ROOT}/usr")
  set(_lib "${_usr}/lib/${CMAKE_LIBRARY_ARCHITECTURE}")
  find_library(DSRT_OPENBLAS_LIBRARY openblas PATHS "${_lib}/openblas-openmp" NO_DEFAULT_PATH REQUIRED)
  find_path(DSRT_OPENBLAS_INCLUDE cblas.h PATHS "${_usr}/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp"
            NO_DEFAULT_PATH REQUIRED)
  find_library(DSRT_HDF5_LIBRARY hdf5 PATHS "${_lib}/hdf5/serial" NO_DEFAULT_PATH REQUIRED)
  find_path(DSRT_HDF5_INCLUDE hdf5.h PATHS "${_usr}/include/hdf5/serial" NO_DEFAULT_PATH REQUIRED)
  _dsrt_imported(dsrt::openblas "${DSRT_OPENBLAS_LIBRARY}" "${DSRT_OPENBLAS_INCLUDE}")
  _dsrt_imported(dsrt::hdf5 "${DSRT_HDF5_LIBRARY}" "${DSRT_HDF5_INCLUDE}")
  # the libraries these need at link time (libgfortran, libsz, ...) lie beside them
  add_link_options("-Wl,-rpath-link,${_lib}")
  message(STATUS "dsrt: dependencies from ${DSRT_DEPS_ROOT}: ${DSRT_OPENBLAS_LIBRARY}, ${DSRT_HDF5_LIBRARY}")
else()
  find_package(PkgConfig REQUIRED)
  # OpenBLAS. Its OpenMP build (Debian: libopenblas-openmp-dev) shares our OpenMP
  # thread pool; the pthreads build keeps a second pool of threads that spin
  # against ours (measured: 30% slower steps on a 2-vCPU machine). Its cblas.h
  # comes first on the include path.
  if(CMAKE_LIBRARY_ARCHITECTURE AND EXISTS "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp/pkgconfig/openblas.pc")
    set(ENV{PKG_CONFIG_PATH} "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp/pkgconfig:$ENV{PKG_CONFIG_PATH}")
  endif()
  pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET GLOBAL openblas)
  add_library(dsrt::openblas ALIAS PkgConfig::OPENBLAS)
  list(GET OPENBLAS_LINK_LIBRARIES 0 DSRT_OPENBLAS_LIBRARY)
  # HDF5 for checkpoints (ckpt/); Debian's serial build. libhdf5 alone: the
  # imported target also drags in libcurl, libcrypto and static stubs that
  # libdsrt.so does not need.
  find_package(HDF5 REQUIRED COMPONENTS C)
  _dsrt_imported(dsrt::hdf5 "${HDF5_C_LIBRARY_hdf5}" "${HDF5_C_INCLUDE_DIRS}")
  message(STATUS "dsrt: OpenBLAS ${DSRT_OPENBLAS_LIBRARY}, HDF5 ${HDF5_C_LIBRARY_hdf5}")
endif()

# CMocka, for the tests
macro(dsrt_find_cmocka)
  if(DSRT_DEPS_ROOT)
    find_library(DSRT_CMOCKA_LIBRARY cmocka PATHS "${_lib}" NO_DEFAULT_PATH REQUIRED)
    find_path(DSRT_CMOCKA_INCLUDE cmocka.h PATHS "${_usr}/include" NO_DEFAULT_PATH REQUIRED)
    _dsrt_imported(dsrt::cmocka "${DSRT_CMOCKA_LIBRARY}" "${DSRT_CMOCKA_INCLUDE}")
  else()
    pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET GLOBAL cmocka)
    add_library(dsrt::cmocka ALIAS PkgConfig::CMOCKA)
  endif()
endmacro()
