//! kmodlab's guest agent: PID 1 of the test VM.
//!
//! It records facts and reports them as events on its own serial port; the host judges. It must
//! never panic (that would panic the kernel): every failure becomes an `AgentError` event.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod channel;
mod helper;
mod kmsg;
mod leaks;
mod module_map;
mod plan;
mod program;
mod runner;
mod system;

use kmodlab_protocol::{Event, AGENT_PORT};

use crate::channel::Channel;
use crate::kmsg::Kmsg;
use crate::runner::Agent;

fn main() {
    // Anywhere but as PID 1 the agent would mount file systems and power off the machine it runs on.
    if nix::unistd::getpid().as_raw() != 1 {
        eprintln!(
            "kmodlab-agent: this is the /init of a kmodlab test VM; it does nothing elsewhere"
        );
        std::process::exit(2);
    }
    run_agent();
}

fn run_agent() -> ! {
    let mount_errors = system::mount_pseudo_filesystems();
    let mut channel = match Channel::open_port(AGENT_PORT) {
        Ok(channel) => channel,
        Err(e) => {
            eprintln!("kmodlab-agent: cannot open the agent channel: {e}");
            for e in mount_errors {
                eprintln!("kmodlab-agent: {e}");
            }
            system::power_off();
        }
    };
    for e in mount_errors {
        channel.error("mount", e);
    }
    let kmsg = Kmsg::open()
        .map_err(|e| channel.error("open /dev/kmsg", e))
        .ok();
    let mut agent = Agent::new(channel, kmsg);

    // The boot log first, so the host sees how the kernel came up even if the plan is unusable.
    agent.forward_boot_log();
    let plan = plan::from_initramfs().unwrap_or_else(|| {
        // A snapshot's VM: once the port is open the host saves it, blocked in its read, and each
        // restored copy goes on from there.
        let port = plan::open_payload_port()?;
        agent.channel.send(&Event::Waiting {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: system::uptime_ms(),
        });
        agent.channel.drain();
        let plan = plan::from_payload(port);
        // What the kernel printed meanwhile (the restore itself prints nothing, normally).
        agent.forward_boot_log();
        plan
    });
    let tests = plan.as_ref().map_or(0, |plan| {
        u32::try_from(plan.tests.len()).unwrap_or(u32::MAX)
    });
    let leak_scan = leaks::available();
    agent.channel.send(&Event::Hello {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: system::kernel_release(),
        uptime_ms: system::uptime_ms(),
        tests,
        leak_scan,
    });
    match plan {
        Ok(plan) => agent.run_plan(&plan, leak_scan),
        Err(e) => agent.channel.error("read plan", e),
    }
    agent.channel.send(&Event::Done);
    agent.channel.drain();
    system::power_off();
}
