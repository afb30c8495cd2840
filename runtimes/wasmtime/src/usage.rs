//! Host-side resource accounting of a container's guests, for [`Runtime::stats`]
//! (`kubectl top`, the HPA).
//!
//! - **CPU**: guests of many containers share a few executor threads, so the process's or a
//!   thread's CPU time says nothing about one container. [`CpuTimed`] wraps a guest's future
//!   and reads the polling thread's CPU clock before and after each `poll`, adding the
//!   difference to its container's [`Usage`]: exactly the time spent running that guest (and
//!   the host calls it makes inline), at the price of two clock reads per poll.
//! - **Memory**: the linear memories and tables the container's live instances hold, counted
//!   by the memory limiter ([`crate::host::Limiter`]) as it allows them to grow, and given
//!   back when an instance's store is dropped. Only live instances count: an HTTP component
//!   holds nothing between requests.
//!
//! [`Runtime::stats`]: wharf_runtime::Runtime::stats

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use rustix::time::{ClockId, clock_gettime};
use wharf_runtime::ContainerStats;

/// The resource usage of one container, shared by all its instances.
#[derive(Debug, Default)]
pub struct Usage {
    /// CPU time spent polling the container's guests, in nanoseconds.
    cpu_ns: AtomicU64,
    /// Bytes of linear memory and tables its live instances hold.
    memory_bytes: AtomicU64,
}

impl Usage {
    /// A snapshot of the counters.
    pub fn stats(&self) -> ContainerStats {
        ContainerStats {
            cpu_usage_ns: self.cpu_ns.load(Ordering::Relaxed),
            memory_bytes: self.memory_bytes.load(Ordering::Relaxed),
        }
    }

    /// Records CPU time used.
    fn add_cpu(&self, nanos: u64) {
        self.cpu_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Records memory taken by an instance.
    pub(crate) fn add_memory(&self, bytes: u64) {
        self.memory_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records memory given back by an instance. Saturates at zero rather than wrapping, so a
    /// bookkeeping mistake shows as too little memory, never as 16 EiB.
    pub(crate) fn release_memory(&self, bytes: u64) {
        // The closure always returns `Some`, so the update cannot fail.
        let _ = self
            .memory_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(bytes))
            });
    }
}

/// The CPU time the calling thread has used, in nanoseconds.
fn thread_cpu_time_ns() -> u64 {
    let now = clock_gettime(ClockId::ThreadCPUTime);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// A guest's future whose polls are charged to its container's CPU time.
///
/// A poll runs on one thread from start to end (a future cannot move between threads in the
/// middle of a poll), so the difference of that thread's CPU clock across the poll is the CPU
/// time the poll took, whatever else the thread runs between polls.
pub struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    usage: Arc<Usage>,
}

impl<F: Future> CpuTimed<F> {
    /// Wraps `inner`, charging its polls to `usage`.
    pub fn new(inner: F, usage: Arc<Usage>) -> CpuTimed<F> {
        CpuTimed {
            inner: Box::pin(inner),
            usage,
        }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let before = thread_cpu_time_ns();
        let polled = self.inner.as_mut().poll(cx);
        let after = thread_cpu_time_ns();
        self.usage.add_cpu(after.saturating_sub(before));
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_added_and_released_without_wrapping() {
        let usage = Usage::default();
        usage.add_memory(65536);
        usage.add_memory(100);
        assert_eq!(usage.stats().memory_bytes, 65636);
        usage.release_memory(65536);
        assert_eq!(usage.stats().memory_bytes, 100);
        usage.release_memory(1000);
        assert_eq!(usage.stats().memory_bytes, 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn only_the_polls_of_the_wrapped_future_are_charged() {
        let usage = Arc::new(Usage::default());
        // Burn CPU outside the wrapper: not charged.
        let spin = |millis: u64| {
            let started = thread_cpu_time_ns();
            while thread_cpu_time_ns() - started < millis * 1_000_000 {
                std::hint::spin_loop();
            }
        };
        spin(20);
        assert_eq!(usage.stats().cpu_usage_ns, 0);
        // Burn about 50 ms inside it, over two polls.
        CpuTimed::new(
            async {
                spin(25);
                tokio::task::yield_now().await;
                spin(25);
            },
            usage.clone(),
        )
        .await;
        let charged = usage.stats().cpu_usage_ns;
        assert!(
            (50_000_000..150_000_000).contains(&charged),
            "charged {charged} ns"
        );
    }
}
