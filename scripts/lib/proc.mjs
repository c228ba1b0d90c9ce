/**
 * @module scripts/lib/proc
 * What Linux's /proc says of a process: which one listens on a port, its CPU time and its peak
 * memory. Counts, read by the benchmarks and the memory tests; never timings of their own.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";

/**
 * The pid of the process listening on `port` on loopback (Linux): with Miniflare, the workerd
 * process that runs the worker, whose CPU time the benchmarks read from /proc/<pid>/stat.
 * @param {number} port
 * @returns {number | undefined}
 */
export function listeningPid(port) {
  const inodes = new Set();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      if (!local || cols[3] !== "0A") continue;
      if (Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port) inodes.add(`socket:[${cols[9]}]`);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let fds;
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (inodes.has(readlinkSync(`/proc/${entry}/fd/${fd}`))) return Number(entry);
      } catch {
        // The descriptor closed while we looked.
      }
    }
  }
  return undefined;
}

/**
 * CPU time (user + system) a process has used so far, in milliseconds.
 * @param {number} pid
 */
export function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS;
}

/**
 * The peak resident memory of a process so far (`VmHWM`), in MiB: a count of bytes, not a timing.
 * @param {number} pid
 */
export function peakMemoryMiB(pid) {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match?.[1] ?? 0) / 1024;
}

/**
 * Sets a process's peak (`VmHWM`) back to what it holds now and returns that, in MiB: what a
 * scenario then adds to the peak is its own, whatever ran before it.
 * @param {number} pid
 */
export function resetPeakMemoryMiB(pid) {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match?.[1] ?? 0) / 1024;
}

/**
 * The newest workerd this process started (Miniflare's child): the one `startWorker` launched last.
 * @returns {number}
 */
export function newestWorkerdPid() {
  const out = execFileSync("ps", ["-o", "pid=,comm=", "--ppid", String(process.pid)]).toString();
  const pids = out
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([, comm]) => comm === "workerd")
    .map(([pid]) => Number(pid));
  const pid = pids.at(-1);
  if (!pid) throw new Error("no workerd child process found");
  return pid;
}

/** USER_HZ: 100 on every Linux the project runs on; `getconf CLK_TCK` says so. */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();
