/* Does Open MPI's shared-memory single-copy mechanism (CMA, process_vm_readv) work here?
 * bench/common.py builds this with mpicc and runs it on 2 ranks with the mechanism
 * enabled: exit 0 and the right sums mean yes. An 8 MB allreduce is far above the
 * rendezvous threshold, so the large messages take the single-copy path. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int n = 1 << 20;
  int64_t* v = malloc(sizeof(int64_t) * (size_t)n);
  if (v == NULL) MPI_Abort(MPI_COMM_WORLD, 2);
  for (int i = 0; i < n; ++i) v[i] = (int64_t)i * (rank + 1);
  MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  const int64_t factor = (int64_t)size * (size + 1) / 2;
  int bad = 0;
  for (int i = 0; i < n; ++i) bad |= v[i] != (int64_t)i * factor;
  free(v);
  if (bad) fprintf(stderr, "cma_probe: wrong sums on rank %d\n", rank);
  MPI_Finalize();
  return bad;
}
