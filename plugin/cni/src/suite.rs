//! Facts the suite's binaries share, in one place: the plugin type names, the route protocol
//! that marks a tombstone, default directories and limits. The plugins, the IPAM and the
//! installer read them from here, so they cannot disagree.

/// The chained plugin's `type`.
pub const TOMBSTONE_TYPE: &str = "tombstone";
/// Our IPvlan main plugin's `type`.
pub const IPVLAN_TYPE: &str = "tombstone-ipvlan";
/// Our IPAM plugin's `type`.
pub const IPAM_TYPE: &str = "tombstone-ipam";

/// The route protocol number that marks a route as a tombstone (`ip route show proto 84`;
/// the installer registers the name `tombstone` for it). Free in the kernel's and iproute2's
/// lists. The plugin deletes only routes with this protocol.
pub const ROUTE_PROTOCOL: u8 = 84;

/// Where the chained plugin's ledgers live unless `stateDir` says otherwise (tmpfs: the
/// routes they describe do not survive a reboot either).
pub const DEFAULT_STATE_DIR: &str = "/run/cni/tombstone";

/// The longest `holdSeconds` the chained plugin accepts (a day).
pub const MAX_HOLD_SECONDS: u64 = 86_400;
/// `holdSeconds` when the config names none.
pub const DEFAULT_HOLD_SECONDS: u64 = 60;

/// Where `tombstone-ipam` keeps allocations unless `dataDir` says otherwise (host-local's).
pub const DEFAULT_IPAM_DATA_DIR: &str = "/var/lib/cni/networks";
/// `reuseAfterSeconds` when the IPAM config names none.
pub const DEFAULT_REUSE_AFTER_SECONDS: u64 = 60;
