# SLURM end-to-end test: a private single-node cluster (munged, slurmctld, slurmd on
# localhost, as root) running jobs/fit_gmm.sbatch (2 ranks, completion), a preempted
# fit that checkpoints, requeues and resumes bitwise, and jobs/sweep_gmm.sbatch as a
# job array. Skipped (77) where SLURM cannot run: packages slurm-wlm/munge absent
# (cmake/install-deps.sh --with-slurm), not root, ports 6817/6818 in use.
# Include from tests/CMakeLists.txt: include(slurm/slurm_tests.cmake)
add_test(NAME slurm
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/slurm_test.sh $<TARGET_FILE:latent>)
set_tests_properties(slurm PROPERTIES
  SKIP_RETURN_CODE 77
  TIMEOUT 1500
  RUN_SERIAL TRUE
  ENVIRONMENT "LATENT_SLURM_TIMELIMIT_TEST=1;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_hwloc_base_binding_policy=none;OMPI_MCA_btl_vader_single_copy_mechanism=none;OMPI_MCA_plm_rsh_agent=;HDF5_USE_FILE_LOCKING=FALSE")

# Two-node cluster in network namespaces (tests/slurm/cluster_two_node.sh): 2 nodes x 2
# ranks over Open MPI's TCP transport, bitwise equal to one node; a killed rank, a link
# taken down, SIGUSR1 + requeue across nodes; node-local TMPDIR; HDF5 without file
# locking. Skipped (77) without root, namespaces or the SLURM packages. RUN_SERIAL: it
# measures timings (watchdog) and must not share the 2 cores with the `slurm` test.
add_test(NAME slurm_two_node
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/two_node_test.sh $<TARGET_FILE:latent>)
set_tests_properties(slurm_two_node PROPERTIES
  SKIP_RETURN_CODE 77
  TIMEOUT 600
  RUN_SERIAL TRUE
  ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_hwloc_base_binding_policy=none;OMPI_MCA_btl_vader_single_copy_mechanism=none;HDF5_USE_FILE_LOCKING=FALSE")
