//! Builder records: a node group (builder) and its nodes, as buildx stores them.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kbx_opts::Platform;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::name::validate_name;

/// A builder: a named group of nodes using one driver.
///
/// Field names and order match buildx's JSON. Fields buildx writes as `null` when unset are
/// `Option`s, so a record read from buildx is written back byte for byte. A field a record
/// leaves out (older and newer buildx releases write different sets) reads as its default, as
/// Go's `encoding/json` leaves it at its zero value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeGroup {
    /// The builder name as typed (the file name is lower-cased).
    #[serde(rename = "Name")]
    pub name: String,
    /// The driver name, e.g. `kubernetes`.
    #[serde(rename = "Driver")]
    pub driver: String,
    /// The nodes, in creation order (`null` when there are none).
    #[serde(rename = "Nodes")]
    pub nodes: Option<Vec<Node>>,
    /// Whether the nodes are expanded at run time (never for stored kubernetes builders).
    #[serde(rename = "Dynamic")]
    pub dynamic: bool,
    /// The last time the builder was saved or used, from `activity/<name>` (not in the JSON).
    #[serde(skip)]
    pub last_activity: Option<Timestamp>,
}

/// One node of a builder: for kubernetes, one Deployment or StatefulSet. Missing fields read
/// as their defaults, as in [`NodeGroup`].
///
/// # Deviation
/// Options Buildx refuses ([`kbx_opts::is_kbx_only_option`]: `context=…`,
/// `loadbalance=rendezvous`) are written under `KbxDriverOpts`, a field Buildx does not read,
/// instead of `DriverOpts`, so Buildx lists and uses the builder with its own defaults; kbx
/// reads both back into [`Node::driver_opts`]. Records without such options are byte for byte
/// Buildx's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, from = "NodeRecord", into = "NodeRecord")]
pub struct Node {
    /// The node name (lower-cased when created).
    #[serde(rename = "Name")]
    pub name: String,
    /// The endpoint, e.g. `kubernetes:///kube?deployment=kube0&kubeconfig=`.
    #[serde(rename = "Endpoint")]
    pub endpoint: String,
    /// The platforms given with `--platform`.
    #[serde(rename = "Platforms")]
    pub platforms: Option<Vec<Platform>>,
    /// The `--driver-opt` map (keys sorted, as Go writes maps).
    #[serde(rename = "DriverOpts")]
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// The buildkitd arguments (`Flags` in the JSON, a name buildx keeps for compatibility).
    #[serde(rename = "Flags")]
    pub buildkitd_flags: Option<Vec<String>>,
    /// Config files by relative path (`buildkitd.toml`, `certs/<host>/…`), base64 in the JSON.
    #[serde(rename = "Files", with = "crate::json::files")]
    pub files: Option<BTreeMap<String, Vec<u8>>>,
}

/// [`Node`] as written to disk: the kbx-only driver options kept apart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct NodeRecord {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Endpoint")]
    endpoint: String,
    #[serde(rename = "Platforms")]
    platforms: Option<Vec<Platform>>,
    #[serde(rename = "DriverOpts")]
    driver_opts: Option<BTreeMap<String, String>>,
    #[serde(rename = "Flags")]
    buildkitd_flags: Option<Vec<String>>,
    #[serde(rename = "Files", with = "crate::json::files")]
    files: Option<BTreeMap<String, Vec<u8>>>,
    #[serde(rename = "KbxDriverOpts", skip_serializing_if = "BTreeMap::is_empty")]
    kbx_driver_opts: BTreeMap<String, String>,
}

impl From<NodeRecord> for Node {
    fn from(r: NodeRecord) -> Self {
        let driver_opts = match (r.driver_opts, r.kbx_driver_opts) {
            (opts, extra) if extra.is_empty() => opts,
            (opts, extra) => {
                let mut all = opts.unwrap_or_default();
                all.extend(extra);
                Some(all)
            }
        };
        Node {
            name: r.name,
            endpoint: r.endpoint,
            platforms: r.platforms,
            driver_opts,
            buildkitd_flags: r.buildkitd_flags,
            files: r.files,
        }
    }
}

impl From<Node> for NodeRecord {
    fn from(n: Node) -> Self {
        let mut kbx_driver_opts = BTreeMap::new();
        let driver_opts = n.driver_opts.map(|opts| {
            opts.into_iter()
                .filter_map(|(k, v)| {
                    if kbx_opts::is_kbx_only_option(&k, &v) {
                        kbx_driver_opts.insert(k, v);
                        None
                    } else {
                        Some((k, v))
                    }
                })
                .collect()
        });
        NodeRecord {
            name: n.name,
            endpoint: n.endpoint,
            platforms: n.platforms,
            driver_opts,
            buildkitd_flags: n.buildkitd_flags,
            files: n.files,
            kbx_driver_opts,
        }
    }
}

/// What `create` asks to change on a builder: the arguments of buildx's `NodeGroup.Update`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUpdate {
    /// `--node`: the node to update, or the name of the new node (empty: generated).
    pub name: String,
    /// The endpoint of the node.
    pub endpoint: String,
    /// `--platform` values (comma lists allowed), parsed and normalised.
    pub platforms: Vec<String>,
    /// Whether `endpoint` replaces the stored one on an existing node (kubernetes: no).
    pub set_endpoint: bool,
    /// `--append`: add a node to an existing builder.
    pub append: bool,
    /// The buildkitd arguments; `None` leaves an existing node's unchanged.
    pub buildkitd_flags: Option<Vec<String>>,
    /// Config files loaded from `--buildkitd-config`; `None` when no file was given.
    pub files: Option<BTreeMap<String, Vec<u8>>>,
    /// The `--driver-opt` map; `None` leaves an existing node's unchanged.
    pub driver_opts: Option<BTreeMap<String, String>>,
}

impl NodeGroup {
    /// An empty builder record.
    pub fn new(name: impl Into<String>, driver: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            driver: driver.into(),
            ..Self::default()
        }
    }

    /// The nodes (empty when the record has none).
    pub fn nodes(&self) -> &[Node] {
        self.nodes.as_deref().unwrap_or_default()
    }

    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes().iter().find(|n| n.name == name)
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.nodes().iter().position(|n| n.name == name)
    }

    /// The name a new node gets when `--node` is not given: `<builder><i>` with the smallest
    /// unused `i`.
    pub fn next_node_name(&self) -> String {
        (0..)
            .map(|i| format!("{}{i}", self.name))
            .find(|n| self.find(n).is_none())
            .unwrap_or_default()
    }

    /// Adds or updates a node as `buildx create` does.
    ///
    /// On an existing node: the endpoint changes only with `set_endpoint`, platforms only when
    /// given, flags and driver options when `Some` (replacing, not merging), config files are
    /// merged in. A new node gets the given or generated name (validated, lower-cased). Then
    /// duplicate endpoints are rejected and the node's platforms are removed from every other
    /// node.
    ///
    /// # Deviation
    /// buildx panics (`assignment to entry in nil map`) when config files are merged into a node
    /// that had none; kbx creates the map.
    pub fn update(&mut self, u: NodeUpdate) -> Result<(), Error> {
        if self.dynamic {
            return Err(Error::Dynamic("Update"));
        }
        let index = self.find(&u.name);
        if index.is_none() && !u.append {
            if !self.nodes().is_empty() {
                return Err(Error::NodeNotFoundForUpdate(u.name));
            }
            self.nodes = None;
        }
        let local = Platform::local();
        let platforms = if u.platforms.is_empty() {
            None
        } else {
            Some(Platform::parse_list(&u.platforms, &local)?)
        };

        let index = match index {
            Some(i) => {
                let nodes = self.nodes.get_or_insert_with(Vec::new);
                let n = &mut nodes[i];
                if u.set_endpoint {
                    n.endpoint = u.endpoint.clone();
                }
                if platforms.is_some() {
                    n.platforms = platforms;
                }
                if let Some(flags) = u.buildkitd_flags {
                    n.buildkitd_flags = Some(flags);
                }
                if let Some(opts) = u.driver_opts {
                    n.driver_opts = Some(opts);
                }
                if let Some(files) = u.files {
                    n.files.get_or_insert_with(BTreeMap::new).extend(files);
                }
                i
            }
            None => {
                let name = if u.name.is_empty() {
                    self.next_node_name()
                } else {
                    u.name
                };
                let name = validate_name(&name)?;
                let nodes = self.nodes.get_or_insert_with(Vec::new);
                nodes.push(Node {
                    name,
                    endpoint: u.endpoint.clone(),
                    platforms,
                    driver_opts: u.driver_opts,
                    buildkitd_flags: u.buildkitd_flags,
                    files: u.files,
                });
                nodes.len() - 1
            }
        };
        self.validate_duplicates(&u.endpoint, index)
    }

    fn validate_duplicates(&mut self, endpoint: &str, index: usize) -> Result<(), Error> {
        let nodes = self.nodes.get_or_insert_with(Vec::new);
        if nodes.iter().filter(|n| n.endpoint == endpoint).count() > 1 {
            return Err(Error::DuplicateEndpoint(endpoint.to_owned()));
        }
        let taken: Vec<String> = nodes[index]
            .platforms
            .iter()
            .flatten()
            .map(format_short)
            .collect();
        for (i, node) in nodes.iter_mut().enumerate() {
            if i == index {
                continue;
            }
            if let Some(list) = &mut node.platforms {
                list.retain(|p| !taken.contains(&format_short(p)));
            }
        }
        Ok(())
    }

    /// Removes a node as `buildx create --leave` does (the store only; cluster objects are the
    /// driver's business).
    pub fn leave(&mut self, name: &str) -> Result<(), Error> {
        if self.dynamic {
            return Err(Error::Dynamic("Leave"));
        }
        let Some(i) = self.find(name) else {
            return Err(Error::NodeNotFoundForLeave {
                node: name.to_owned(),
                builder: self.name.clone(),
            });
        };
        let nodes = self.nodes.get_or_insert_with(Vec::new);
        if nodes.len() == 1 {
            return Err(Error::LeaveLastNode);
        }
        nodes.remove(i);
        Ok(())
    }

    /// The record as buildx writes it: compact Go `encoding/json`.
    pub fn to_json(&self) -> String {
        crate::json::to_go_json(self)
    }

    /// Reads a record written by buildx or kbx.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// containerd's `Format`: `os/arch[/variant]`, used to de-duplicate platforms across nodes.
fn format_short(p: &Platform) -> String {
    [p.os.as_str(), &p.architecture, &p.variant]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}
