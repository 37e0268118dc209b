//! Firewall rules that close a port, generated from the port and transport so
//! curated entries only need the service-specific advice.

use serde::Serialize;

use crate::Proto;

/// Ready-to-run rules that stop inbound traffic to one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosingRules {
    /// Windows Defender Firewall, in an elevated PowerShell.
    pub windows: String,
    /// Linux nftables, assuming the usual `inet filter` table with an `input` chain.
    pub nftables: String,
    /// Ubuntu/Debian's ufw front end.
    pub ufw: String,
    /// What to change on a home router.
    pub router: String,
}

/// Rules that drop inbound `proto` traffic to `port`. They drop rather than
/// reject so the port looks stealth (no answer) rather than closed.
pub fn closing_rules(port: u16, proto: Proto) -> ClosingRules {
    let upper = match proto {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
    };
    ClosingRules {
        windows: format!(
            "New-NetFirewallRule -DisplayName \"Block inbound {port}/{proto}\" -Direction Inbound -Protocol {upper} -LocalPort {port} -Action Block"
        ),
        nftables: format!("nft add rule inet filter input {proto} dport {port} drop"),
        ufw: format!("ufw deny in {port}/{proto}"),
        router: format!(
            "Delete any port-forwarding (\"virtual server\") rule for {port}/{proto}, take devices out of the DMZ, and turn off UPnP so devices cannot open {port}/{proto} on their own."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_the_port_and_transport() {
        let r = closing_rules(3389, Proto::Udp);
        assert!(r.windows.contains("-Protocol UDP -LocalPort 3389"));
        assert_eq!(
            r.nftables,
            "nft add rule inet filter input udp dport 3389 drop"
        );
        assert_eq!(r.ufw, "ufw deny in 3389/udp");
        assert!(r.router.contains("3389/udp"));
    }
}
