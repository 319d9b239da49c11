package main

// commands lists every subcommand. Keep it sorted by path; each command
// lives in its own cmd_*.go file.
func commands() []entry {
	return append([]entry{
		adminPasswdEntry,
		completionEntry,
		{Path: "connectors list", Summary: "List enrolled connectors and their health", Long: "HEALTH is what the control plane derives: healthy; unreachable when no heartbeat came for 3 heartbeat intervals (30 s by default); blocked when the hardware fingerprint changed ('outpost connectors show NAME' gives the reason); revoked; never seen before the first heartbeat. ADDRESS is the first address the connector reported; SKEW its clock minus the control plane's.", Examples: "outpost connectors list --config /var/lib/outpost/admin.conf", New: func() command { return &connectorsListCmd{} }},
		{Path: "connectors revoke", Args: "NAME", Summary: "Revoke a connector (also regenerates its group's keys)", Examples: "outpost connectors revoke Melbourne-2", New: func() command { return &connectorsRevokeCmd{} }},
		{Path: "connectors show", Args: "NAME", Summary: "Show one connector", Examples: "outpost connectors show Melbourne-1 --json", New: func() command { return &connectorsShowCmd{} }},
		deployEntry,
		deployDestroyEntry,
		{Path: "groups create", Args: "NAME", Summary: "Create a connector group", Long: "--version pins the release the group's connectors are upgraded to (a published version); the default, latest, follows the newest published release.", Examples: "outpost groups create melbourne --location 'Melbourne DC' --window-day sat --window-hour 1\noutpost groups create lab --version 1.2.0", New: func() command { return &groupsCreateCmd{} }},
		{Path: "groups delete", Args: "NAME", Summary: "Delete a connector group", Long: "A group that still has keys or connectors is deleted only with --force: its keys are deleted and its connectors revoked.", Examples: "outpost groups delete melbourne --force", New: func() command { return &groupsDeleteCmd{} }},
		{Path: "groups edit", Args: "NAME", Summary: "Change a group's location, upgrade window or version", Long: "--version V pins the group to the published release V (refused for a version that is not published, naming those that are); --version latest follows the newest. A new version also resumes a rollout that stopped on the old one.", Examples: "outpost groups edit melbourne --window-day sun --window-hour 3\noutpost groups edit melbourne --version 1.2.0\noutpost groups edit melbourne --version latest", New: func() command { return &groupsEditCmd{} }},
		{Path: "groups list", Summary: "List connector groups", Examples: "outpost groups list", New: func() command { return &groupsListCmd{} }},
		{Path: "groups show", Args: "NAME", Summary: "Show one connector group and its rollout", Long: "The Rollout section shows the version the group's connectors are brought to, the rollout's state (idle, waiting, upgrading, stopped) and why, the window, and one line per connector: version, health, status (done, upgrading, waiting, failed, newer) and what it waits for.", Examples: "outpost groups show melbourne\noutpost groups show melbourne --json", New: func() command { return &groupsShowCmd{} }},
		imageBuildEntry,
		imagePackEntry,
		keyCheckEntry,
		{Path: "keys create", Summary: "Create a provisioning key (prints the key alone on stdout)", Long: "Details go to standard error, so KEY=$(outpost keys create …) captures only the key. The default expiry is 14 days.", Examples: "outpost keys create --name Melbourne --group melbourne --max-uses 2\noutpost keys create --name Lab --group lab --max-uses 50 --expires-in never", New: func() command { return &keysCreateCmd{} }},
		{Path: "keys delete", Args: "NAME", Summary: "Delete a provisioning key (its connectors stay)", Long: "A key that enrolled connectors (not revoked) is deleted only with --force; the connectors stay enrolled either way.", Examples: "outpost keys delete Melbourne\noutpost keys delete Melbourne --force", New: func() command { return &keysNameCmd{verb: "delete"} }},
		{Path: "keys download", Args: "NAME", Summary: "Write a provisioning key to a file (mode 0600)", Examples: "outpost keys download Melbourne -o melbourne.key\noutpost keys download Melbourne -o - | ssh appliance tee /opt/outpost/var/provision_key", New: func() command { return &keysDownloadCmd{} }},
		{Path: "keys edit", Args: "NAME", Summary: "Change a key's maximum uses", Examples: "outpost keys edit Melbourne --max-uses 4", New: func() command { return &keysEditCmd{} }},
		{Path: "keys list", Summary: "List provisioning keys (redacted)", Examples: "outpost keys list --group melbourne --state active", New: func() command { return &keysListCmd{} }},
		{Path: "keys regenerate", Args: "NAME", Summary: "Give a key a new secret; the old text stops working", Examples: "outpost keys regenerate Melbourne", New: func() command { return &keysNameCmd{verb: "regenerate"} }},
		{Path: "keys reveal", Args: "NAME", Summary: "Print a provisioning key (refused once it is used up)", Examples: "outpost keys reveal Melbourne", New: func() command { return &keysNameCmd{verb: "reveal"} }},
		{Path: "keys revoke", Args: "NAME", Summary: "Revoke a provisioning key", Examples: "outpost keys revoke Melbourne", New: func() command { return &keysNameCmd{verb: "revoke"} }},
		{Path: "keys show", Args: "NAME", Summary: "Show one provisioning key (redacted)", Examples: "outpost keys show Melbourne --json", New: func() command { return &keysNameCmd{verb: "show"} }},
		releasesKeygenEntry,
		releasesListEntry,
		releasesPublishEntry,
		{Path: "server", Summary: "Run the control plane (HTTPS enrollment, heartbeat and admin API)", Long: "On first start it creates a root CA, the signing CA \"Connector\", an admin token and DATA/admin.conf (mode 0600) for the admin commands' --config. admin.conf is written when missing; later starts update only the fields an admin has not edited. DATA must be private (0700, secrets 0600): the server refuses to start otherwise.\n\nDatabase: SQLite in DATA/outpost.db by default; --database postgres://… (or postgresql://…) for PostgreSQL, servers sharing a database must share the data directory's CAs and secrets; another SQLite file as sqlite:PATH or PATH.db. Anything else is refused.\n\nReleases: each --release-key FILE.pub (from 'outpost releases keygen -o FILE') is a key whose bundles 'outpost releases publish' accepts; without one, publishing is refused. Bundles are kept in DATA/releases. Every heartbeat interval the server upgrades connectors group by group (see 'outpost upgrade --help').\n\nEach --hostname is NAME or NAME:PORT; keys name the first. Changing it orphans existing keys: the server warns at start how many.", Examples: "outpost server --data /var/lib/outpost --hostname cp.example.com\noutpost server --data /var/lib/outpost --listen :443 --database postgres://outpost@db/outpost\noutpost server --data /var/lib/outpost --database sqlite:/srv/outpost/cp.sqlite\noutpost server --data /var/lib/outpost --hostname cp.example.com --release-key release.key.pub", New: func() command { return &serverCmd{} }},
		upgradeEntry,
	}, labEntries...)
}
