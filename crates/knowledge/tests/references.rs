//! Checks the form of every curated `references` entry (issue 11).
//!
//! This checks form and range, not existence online: the project builds and
//! tests without web access, so it cannot fetch the RFC index or follow links.
//! - `RFC N`: N must be between 1 and [`MAX_KNOWN_RFC`], the highest RFC number
//!   this check was written knowing to exist, or be in [`LATER_RFCS`], a reviewed
//!   list of newer numbers with the reason each is accepted.
//! - links: `https://`, no spaces, and the host must be on [`HOSTS`], a reviewed
//!   allow-list of official documentation hosts with a reason for each (for
//!   github.com, the repository owner must be on [`GITHUB_OWNERS`]). A new host
//!   fails here until someone checks it is the project's or vendor's own site.

use harbormaster_knowledge::curated;

/// The highest RFC number known, when this check was written, to have been
/// published (RFC 9700, the OAuth 2.0 security best current practice, January 2025).
const MAX_KNOWN_RFC: u32 = 9700;

/// Cited RFC numbers above [`MAX_KNOWN_RFC`], each reviewed.
const LATER_RFCS: &[(u32, &str)] = &[
    (
        9887,
        "TACACS+ over TLS 1.3 (cited by 300/tcp): RFC Editor page and datatracker history read in the stored copies (published 2025-12-09, Proposed Standard).",
    ),
    (
        10087,
        "EPP Transport over QUIC (cited by 700/udp): RFC Editor text read in the stored copies (November 2026, Standards Track).",
    ),
];

/// Hosts whose pages count as official documentation, and why.
const HOSTS: &[(&str, &str)] = &[
    // Standards bodies, registries and official vulnerability records.
    ("www.iana.org", "IANA, the registry itself"),
    ("datatracker.ietf.org", "IETF, drafts and RFCs"),
    ("www.itu.int", "ITU-T recommendations"),
    (
        "pubs.opengroup.org",
        "The Open Group, publisher of POSIX and the Single UNIX Specification",
    ),
    ("docs.oasis-open.org", "OASIS standards (MQTT, AMQP 1.0, …)"),
    (
        "www.omg.org",
        "Object Management Group standards (CORBA, DDS)",
    ),
    ("www.dmtf.org", "DMTF standards (WS-Management, Redfish)"),
    ("www.amqp.org", "AMQP specification site"),
    ("xmpp.org", "XMPP Standards Foundation"),
    (
        "www.loc.gov",
        "Library of Congress, maintenance agency of Z39.50",
    ),
    ("www.dicomstandard.org", "DICOM standard (NEMA)"),
    ("www.modbus.org", "Modbus Organization"),
    ("modbus.org", "Modbus Organization"),
    ("www.odva.org", "ODVA, owner of EtherNet/IP and CIP"),
    ("www.dnp.org", "DNP Users Group, owner of DNP3"),
    ("bacnet.org", "BACnet International"),
    ("opcfoundation.org", "OPC Foundation, owner of OPC UA"),
    (
        "reference.opcfoundation.org",
        "OPC Foundation specification reference",
    ),
    (
        "www.ntcip.org",
        "NTCIP, the traffic-control standards joint committee",
    ),
    (
        "www.bittorrent.org",
        "BitTorrent protocol specifications (BEPs)",
    ),
    (
        "nvd.nist.gov",
        "NIST National Vulnerability Database, official CVE details",
    ),
    ("www.cve.org", "CVE Program, the official CVE records"),
    (
        "www.cisa.gov",
        "CISA advisories and the Known Exploited Vulnerabilities catalogue",
    ),
    ("www.kb.cert.org", "CERT/CC vulnerability notes"),
    // Vendor documentation and security advisories.
    ("learn.microsoft.com", "Microsoft documentation"),
    ("msrc.microsoft.com", "Microsoft Security Response Center"),
    ("support.apple.com", "Apple support documentation"),
    (
        "developer.android.com",
        "Android developer documentation (Google)",
    ),
    ("developers.google.com", "Google developer documentation"),
    ("docs.oracle.com", "Oracle documentation"),
    ("www.oracle.com", "Oracle product pages and advisories"),
    ("dev.mysql.com", "MySQL documentation (Oracle)"),
    ("openjdk.org", "OpenJDK project"),
    ("www.ibm.com", "IBM documentation"),
    ("www.intel.com", "Intel documentation and advisories"),
    ("support.sap.com", "SAP support"),
    ("sec.cloudapps.cisco.com", "Cisco security advisories"),
    ("support.checkpoint.com", "Check Point support"),
    ("www.huawei.com", "Huawei PSIRT notices"),
    ("help.mikrotik.com", "MikroTik documentation"),
    ("kb.synology.com", "Synology knowledge base"),
    ("www.synology.com", "Synology product documentation"),
    ("support.plex.tv", "Plex support"),
    (
        "www.minecraft.net",
        "Mojang's Minecraft server download and documentation",
    ),
    ("advisory.splunk.com", "Splunk security advisories"),
    ("www.tenable.com", "Tenable, vendor of Nessus (8834)"),
    ("www.radmin.com", "Famatech, vendor of Radmin"),
    ("www.wingate.com", "Qbik, vendor of WinGate"),
    ("www.graphon.com", "GraphOn, vendor of GO-Global"),
    (
        "www.sr-research.com",
        "SR Research, vendor of the EyeLink systems",
    ),
    ("www.seriss.com", "Seriss, vendor of the Rush render queue"),
    ("velneo.com", "Velneo, vendor of the Velneo platform"),
    ("www.amigaforever.com", "Cloanto, vendor of Amiga Forever"),
    ("docs.cpanel.net", "cPanel documentation"),
    ("docs.directadmin.com", "DirectAdmin documentation"),
    ("webmin.com", "Webmin project"),
    ("docs.portainer.io", "Portainer documentation"),
    ("docs.konghq.com", "Kong documentation"),
    ("developer.hashicorp.com", "HashiCorp documentation"),
    ("www.elastic.co", "Elastic documentation"),
    ("www.mongodb.com", "MongoDB documentation"),
    ("neo4j.com", "Neo4j documentation"),
    ("clickhouse.com", "ClickHouse documentation"),
    ("mariadb.com", "MariaDB documentation"),
    ("docs.percona.com", "Percona documentation"),
    ("redis.io", "Redis documentation"),
    ("grafana.com", "Grafana Labs documentation"),
    ("docs.influxdata.com", "InfluxData documentation"),
    ("www.rabbitmq.com", "RabbitMQ documentation"),
    ("docs.docker.com", "Docker documentation"),
    (
        "www.akamai.com",
        "Akamai's own research that first reported the WS-Discovery reflection vector (3702); primary source, not a vendor manual",
    ),
    (
        "www.zerodayinitiative.com",
        "ZDI's advisory is the disclosure record of the vulnerability it cites (52869); primary source",
    ),
    // Open-source projects' own sites.
    ("kubernetes.io", "Kubernetes project"),
    ("etcd.io", "etcd project"),
    ("prometheus.io", "Prometheus project"),
    ("www.postgresql.org", "PostgreSQL project"),
    ("firebirdsql.org", "Firebird project"),
    ("www.openssh.com", "OpenSSH project"),
    ("www.openldap.org", "OpenLDAP project"),
    ("www.postfix.org", "Postfix project"),
    ("www.cups.org", "CUPS project"),
    ("download.samba.org", "Samba project documentation"),
    ("netatalk.io", "Netatalk project"),
    ("www.squid-cache.org", "Squid project"),
    ("mosquitto.org", "Eclipse Mosquitto project"),
    ("tomcat.apache.org", "Apache Tomcat"),
    ("hadoop.apache.org", "Apache Hadoop"),
    ("activemq.apache.org", "Apache ActiveMQ"),
    ("kafka.apache.org", "Apache Kafka"),
    ("zookeeper.apache.org", "Apache ZooKeeper"),
    ("cassandra.apache.org", "Apache Cassandra"),
    ("subversion.apache.org", "Apache Subversion"),
    (
        "svnbook.red-bean.com",
        "Version Control with Subversion, the book the Subversion project links as its manual",
    ),
    ("docs.couchdb.org", "Apache CouchDB documentation"),
    ("www.erlang.org", "Erlang/OTP project"),
    ("www.php.net", "PHP project"),
    ("docs.python.org", "Python documentation"),
    ("docs.djangoproject.com", "Django project"),
    ("flask.palletsprojects.com", "Flask (Pallets project)"),
    ("sinatrarb.com", "Sinatra project"),
    (
        "jupyter-server.readthedocs.io",
        "Jupyter Server documentation",
    ),
    (
        "jupyter-notebook.readthedocs.io",
        "Jupyter Notebook documentation",
    ),
    ("bind9.readthedocs.io", "ISC BIND 9 documentation"),
    (
        "syslog-ng.github.io",
        "syslog-ng documentation (project's own GitHub Pages)",
    ),
    (
        "gnustep.github.io",
        "GNUstep project site (its own GitHub Pages)",
    ),
    ("www.x.org", "X.Org Foundation"),
    ("www.tinc-vpn.org", "tinc project"),
    ("www.wireguard.com", "WireGuard project"),
    ("openvpn.net", "OpenVPN"),
    ("community.torproject.org", "Tor Project"),
    ("www.gnunet.org", "GNUnet project"),
    ("bitcoincore.org", "Bitcoin Core project"),
    ("geth.ethereum.org", "go-ethereum project"),
    ("www.jenkins.io", "Jenkins project"),
    ("git-scm.com", "Git project"),
    ("cockpit-project.org", "Cockpit project"),
    ("supervisord.org", "Supervisor project"),
    ("boinc.berkeley.edu", "BOINC project (UC Berkeley)"),
    ("www.openafs.org", "OpenAFS project"),
    ("web.mit.edu", "MIT Kerberos documentation"),
    (
        "linuxptp.nwtime.org",
        "linuxptp project (Network Time Foundation)",
    ),
    ("docs.perfsonar.net", "perfSONAR project"),
    ("www.unidata.ucar.edu", "Unidata (UCAR), maintainer of LDM"),
    (
        "www.ssec.wisc.edu",
        "SSEC (University of Wisconsin), maintainer of McIDAS",
    ),
    ("www.povray.org", "POV-Ray project"),
    ("www.dosbox.com", "DOSBox project"),
    ("citadel.org", "Citadel project"),
    ("www.aircrack-ng.org", "Aircrack-ng project"),
    ("docs.metasploit.com", "Metasploit Framework documentation"),
    (
        "cr.yp.to",
        "D. J. Bernstein's site, the home of qmail and its protocols",
    ),
    ("man.freebsd.org", "FreeBSD manual pages"),
    ("man.openbsd.org", "OpenBSD manual pages"),
    ("man.netbsd.org", "NetBSD manual pages"),
    ("docs.kernel.org", "Linux kernel documentation"),
    ("github.com", "only for the repositories in GITHUB_OWNERS"),
];

/// GitHub owners whose repositories are the official home of a project.
const GITHUB_OWNERS: &[(&str, &str)] = &[
    ("apache", "Apache Software Foundation"),
    ("memcached", "memcached project"),
    ("cmusatyalab", "Carnegie Mellon's Coda file system group"),
];

#[test]
fn reference_forms_are_valid() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for c in curated() {
        let at = format!("{}/{}", c.port, c.proto);
        for (i, r) in c.references.iter().enumerate() {
            checked += 1;
            if c.references[..i].contains(r) {
                problems.push(format!("{at}: {r:?} listed twice"));
            }
            if let Some(n) = r.strip_prefix("RFC ") {
                match n.parse::<u32>() {
                    Ok(n) if n.to_string().len() == r.len() - 4 => {
                        if n == 0 || (n > MAX_KNOWN_RFC && !LATER_RFCS.iter().any(|(k, _)| *k == n))
                        {
                            problems.push(format!(
                                "{at}: RFC {n} is outside 1-{MAX_KNOWN_RFC} and not in LATER_RFCS"
                            ));
                        }
                    }
                    _ => problems.push(format!("{at}: {r:?} is not \"RFC <number>\"")),
                }
                continue;
            }
            let Some(rest) = r.strip_prefix("https://") else {
                problems.push(format!(
                    "{at}: {r:?} is neither \"RFC N\" nor an https:// link"
                ));
                continue;
            };
            if r.chars().any(char::is_whitespace) || r.contains("utm_") {
                problems.push(format!("{at}: {r:?} has spaces or tracking parameters"));
            }
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if !HOSTS.iter().any(|(h, _)| *h == host) {
                problems.push(format!(
                    "{at}: host {host} of {r:?} is not on the reviewed HOSTS list"
                ));
            } else if host == "github.com" {
                let owner = rest.split('/').nth(1).unwrap_or_default();
                if !GITHUB_OWNERS.iter().any(|(o, _)| *o == owner) {
                    problems.push(format!(
                        "{at}: GitHub owner {owner:?} of {r:?} is not on GITHUB_OWNERS"
                    ));
                }
            }
        }
    }
    assert!(checked > 500, "only {checked} references checked");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The allow-lists stay reviewable: no duplicates, a reason for each.
#[test]
fn allow_lists_are_well_formed() {
    for (i, (h, why)) in HOSTS.iter().enumerate() {
        assert!(
            !why.is_empty() && !HOSTS[..i].iter().any(|(o, _)| o == h),
            "{h}"
        );
        assert!(!h.contains('/') && h.contains('.'), "{h}");
    }
    for (n, why) in LATER_RFCS {
        assert!(*n > MAX_KNOWN_RFC && !why.is_empty());
    }
}
