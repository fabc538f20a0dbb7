//! The thread pool for work that mostly waits on the disk (storing and
//! restoring many small files): more threads than cores, because creating,
//! syncing and renaming a file is mostly waiting, and waits overlap.
//! Memory stays bounded: each thread holds at most a few MiB.

use std::sync::OnceLock;

/// Threads per core in the I/O pool: waits overlap (small corpus, per-file
/// fsync: 2 threads 4.5 s, 16 threads 2.4 s), but each thread's buffers
/// and malloc arena cost memory. With packs the waits are few: full corpus
/// first backup on 2 cores, 6 threads 76-83 MB peak, 4 threads 65-71 MB,
/// the same CPU and wall time.
const THREADS_PER_CORE: usize = 2;

pub fn io_pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads((cores * THREADS_PER_CORE).clamp(4, 16))
            .thread_name(|i| format!("io-{i}"))
            .build()
            .expect("a thread pool can be built")
    })
}
