//! The files around the plugin, as text: the route protocol name for iproute2 and the
//! systemd units of the periodic sweep.

use std::path::Path;

use tombstone_cni::suite::ROUTE_PROTOCOL;

/// Where iproute2 reads extra protocol names (on the node).
pub const RT_PROTOS_PATH: &str = "/etc/iproute2/rt_protos.d/tombstone.conf";
/// The systemd units (on the node).
pub const SERVICE_PATH: &str = "/etc/systemd/system/tombstone-sweep.service";
pub const TIMER_PATH: &str = "/etc/systemd/system/tombstone-sweep.timer";
/// The first line of every file written here: what the uninstall removes.
pub const MARKER: &str = "# Written by tombstone-install";
pub const TIMER_UNIT: &str = "tombstone-sweep.timer";

/// `ip route show proto tombstone` reads the name from here.
pub fn rt_protos() -> String {
    format!(
        "# Written by tombstone-install: the route protocol of tombstone routes.\n\
         {ROUTE_PROTOCOL}\ttombstone\n"
    )
}

/// The oneshot service running one sweep. `state_dir` is the plugin's `stateDir` when the
/// entry sets one.
pub fn service(bin_dir: &Path, state_dir: Option<&str>) -> String {
    let extra = state_dir.map_or(String::new(), |d| format!(" --state-dir {d}"));
    format!(
        "# Written by tombstone-install.\n\
         [Unit]\n\
         Description=End expired tombstone routes of the tombstone CNI plugin\n\
         After=network.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={}/tombstone sweep{extra}\n",
        bin_dir.display()
    )
}

/// Runs the service every 10 seconds.
pub fn timer() -> String {
    "# Written by tombstone-install.\n\
     [Unit]\n\
     Description=Sweep expired tombstone routes every 10 seconds\n\
     \n\
     [Timer]\n\
     OnBootSec=10s\n\
     OnUnitActiveSec=10s\n\
     AccuracySec=1s\n\
     \n\
     [Install]\n\
     WantedBy=timers.target\n"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        assert!(rt_protos().ends_with("\n84\ttombstone\n"));
        let s = service(Path::new("/opt/cni/bin"), None);
        assert!(s.contains("ExecStart=/opt/cni/bin/tombstone sweep\n"));
        let s = service(Path::new("/opt/cni/bin"), Some("/run/x"));
        assert!(s.contains("ExecStart=/opt/cni/bin/tombstone sweep --state-dir /run/x\n"));
        assert!(timer().contains("OnUnitActiveSec=10s\n"));
    }
}
