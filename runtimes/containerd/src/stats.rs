//! Resource statistics of a container, read from its cgroup as the kubelet's cAdvisor reads
//! them: cumulative CPU time, and the memory working set (usage less the inactive page cache,
//! which the kernel can drop at any time).
//!
//! Both cgroup layouts are read: v1 (one hierarchy per controller, `cpuacct.usage` and
//! `memory.usage_in_bytes`) first, then v2 (one unified hierarchy, `cpu.stat` and
//! `memory.current`). The parsing is pure and tested here; only [`read`] touches the files.

use std::path::Path;

use wharf_runtime::ContainerStats;

/// The root of the cgroup file system.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The statistics of the cgroup at `cgroups_path` (e.g. `/wharf/ID`), or `None` when the
/// cgroup does not exist (any more) in either layout.
pub(crate) fn read(cgroups_path: &str) -> Option<ContainerStats> {
    read_under(Path::new(CGROUP_ROOT), cgroups_path)
}

/// [`read`] with the cgroup file system at `root`.
fn read_under(root: &Path, cgroups_path: &str) -> Option<ContainerStats> {
    let relative = cgroups_path.trim_start_matches('/');
    let file = |dir: &str, name: &str| {
        let path = if dir.is_empty() {
            root.join(relative).join(name)
        } else {
            root.join(dir).join(relative).join(name)
        };
        std::fs::read_to_string(path).ok()
    };

    // cgroups v1: cpuacct is mounted alone or together with cpu, under either name.
    let v1_cpu = ["cpu,cpuacct", "cpuacct", "cpuacct,cpu"]
        .iter()
        .find_map(|dir| file(dir, "cpuacct.usage"))
        .and_then(|text| parse_number(&text));
    let v1_memory = file("memory", "memory.usage_in_bytes")
        .and_then(|text| parse_number(&text))
        .map(|usage| {
            let inactive = file("memory", "memory.stat")
                .and_then(|text| stat_field(&text, "total_inactive_file"))
                .unwrap_or(0);
            working_set(usage, inactive)
        });
    if v1_cpu.is_some() || v1_memory.is_some() {
        return Some(ContainerStats {
            cpu_usage_ns: v1_cpu.unwrap_or(0),
            memory_bytes: v1_memory.unwrap_or(0),
        });
    }

    // cgroups v2: one directory with every controller's files.
    let v2_cpu = file("", "cpu.stat")
        .and_then(|text| stat_field(&text, "usage_usec"))
        .map(|usec| usec.saturating_mul(1000));
    let v2_memory = file("", "memory.current")
        .and_then(|text| parse_number(&text))
        .map(|usage| {
            let inactive = file("", "memory.stat")
                .and_then(|text| stat_field(&text, "inactive_file"))
                .unwrap_or(0);
            working_set(usage, inactive)
        });
    if v2_cpu.is_some() || v2_memory.is_some() {
        return Some(ContainerStats {
            cpu_usage_ns: v2_cpu.unwrap_or(0),
            memory_bytes: v2_memory.unwrap_or(0),
        });
    }
    None
}

/// A file holding one number (`cpuacct.usage`, `memory.usage_in_bytes`, `memory.current`).
fn parse_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file of `key value` lines (`memory.stat`, `cpu.stat`).
fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

/// The working set: usage less the inactive file cache, floored at zero (the two counters are
/// not read atomically, so the cache may momentarily exceed the usage).
fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_MEMORY_STAT: &str = "cache 1638400\nrss 2338816\ninactive_file 12288\n\
        total_cache 1638400\ntotal_rss 2338816\ntotal_inactive_file 1228800\n\
        total_active_file 409600\n";

    const V2_CPU_STAT: &str = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n\
        nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";

    const V2_MEMORY_STAT: &str = "anon 2338816\nfile 1638400\nactive_anon 0\n\
        inactive_anon 2338816\nactive_file 409600\ninactive_file 1228800\n";

    #[test]
    fn flat_keyed_files_are_read_by_exact_key() {
        assert_eq!(
            stat_field(V1_MEMORY_STAT, "total_inactive_file"),
            Some(1_228_800)
        );
        // `inactive_file` is not confused with `total_inactive_file`.
        assert_eq!(stat_field(V1_MEMORY_STAT, "inactive_file"), Some(12_288));
        assert_eq!(stat_field(V2_CPU_STAT, "usage_usec"), Some(123_456));
        assert_eq!(stat_field(V2_CPU_STAT, "missing"), None);
        assert_eq!(stat_field("usage_usec garbage\n", "usage_usec"), None);
    }

    #[test]
    fn single_numbers_are_read_with_their_newline() {
        assert_eq!(parse_number("987654321\n"), Some(987_654_321));
        assert_eq!(parse_number("max\n"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn the_working_set_is_usage_less_inactive_file_floored_at_zero() {
        assert_eq!(working_set(4_000_000, 1_228_800), 2_771_200);
        assert_eq!(working_set(1_000, 5_000), 0);
    }

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the cgroup");
        std::fs::write(path, text).expect("write a cgroup file");
    }

    #[test]
    fn a_v1_cgroup_is_read_from_cpuacct_and_memory() {
        let root = tempfile::tempdir().expect("temporary directory");
        write(root.path(), "cpuacct/wharf/c1/cpuacct.usage", "5000000\n");
        write(
            root.path(),
            "memory/wharf/c1/memory.usage_in_bytes",
            "4000000\n",
        );
        write(root.path(), "memory/wharf/c1/memory.stat", V1_MEMORY_STAT);
        assert_eq!(
            read_under(root.path(), "/wharf/c1"),
            Some(ContainerStats {
                cpu_usage_ns: 5_000_000,
                memory_bytes: 2_771_200,
            })
        );
    }

    #[test]
    fn a_v1_cgroup_is_read_under_the_joint_cpu_cpuacct_mount() {
        let root = tempfile::tempdir().expect("temporary directory");
        write(root.path(), "cpu,cpuacct/wharf/c1/cpuacct.usage", "7\n");
        let stats = read_under(root.path(), "/wharf/c1").expect("stats");
        assert_eq!(stats.cpu_usage_ns, 7);
        assert_eq!(stats.memory_bytes, 0);
    }

    #[test]
    fn a_v2_cgroup_is_read_from_cpu_stat_and_memory_current() {
        let root = tempfile::tempdir().expect("temporary directory");
        write(root.path(), "wharf/c1/cpu.stat", V2_CPU_STAT);
        write(root.path(), "wharf/c1/memory.current", "4000000\n");
        write(root.path(), "wharf/c1/memory.stat", V2_MEMORY_STAT);
        assert_eq!(
            read_under(root.path(), "/wharf/c1"),
            Some(ContainerStats {
                cpu_usage_ns: 123_456_000,
                memory_bytes: 2_771_200,
            })
        );
    }

    #[test]
    fn a_missing_cgroup_has_no_stats() {
        let root = tempfile::tempdir().expect("temporary directory");
        assert_eq!(read_under(root.path(), "/wharf/gone"), None);
    }
}
