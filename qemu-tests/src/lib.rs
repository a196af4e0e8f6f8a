//! Drives QEMU for the image tests: boot the built image, talk to its
//! serial console, run commands and read their output and exit status,
//! wait for it to power off.
//!
//! KVM is used when it really runs a guest; otherwise TCG, with timeouts
//! sized for it. Nothing is skipped: a missing image or QEMU is a failure.

pub mod imds;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a boot to `ros: ready` may take. TCG on a loaded two-core
/// machine takes about 20 s; KVM about 2 s.
pub const READY_TIMEOUT: Duration = Duration::from_secs(240);
/// How long one console command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the image under test is: `$ROS_IMAGE_DIR` (for example an
/// `image-build --out` directory of its own), else `target/image/`.
pub fn image_dir() -> PathBuf {
    match std::env::var_os("ROS_IMAGE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/image"),
    }
}

/// The built image parts, from [`image_dir`].
#[derive(Debug, Clone)]
pub struct Image {
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    pub iso: PathBuf,
}

impl Image {
    /// The image `image-build` wrote. Panics (the test fails) when a part
    /// is missing, saying how to build it.
    pub fn built() -> Self {
        let dir = image_dir();
        let image = Self {
            vmlinuz: dir.join("vmlinuz"),
            initrd: dir.join("initrd"),
            iso: dir.join("ros.iso"),
        };
        for part in [&image.vmlinuz, &image.initrd, &image.iso] {
            assert!(
                part.is_file(),
                "{} is missing: build the image first (`cargo run -p image-build`, or ./dev build)",
                part.display()
            );
        }
        image
    }
}

/// How the machine boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// `-kernel/-initrd` with this command line: the fastest.
    Kernel { append: String },
    /// From the ISO as a CD-ROM, through ISOLINUX.
    Cdrom,
    /// From the first disk; the test attaches it with `-drive`.
    Disk,
}

/// The kernel command line of the tests: the serial console, and only
/// errors from the kernel log, so command output stays readable.
pub const TEST_APPEND: &str = "console=ttyS0,115200n8 loglevel=3 panic=-1";

/// What [`VmBuilder::kernel`] adds, as the ISO's boot entry does: the
/// serial console logs `rancher` in by itself.
pub const AUTOLOGIN_APPEND: &str = "rancher.autologin=ttyS0";

/// A virtual machine being configured.
#[derive(Debug, Clone)]
pub struct VmBuilder {
    image: Image,
    boot: Boot,
    memory_mib: u32,
    extra: Vec<String>,
    monitor: bool,
    uefi: bool,
}

impl VmBuilder {
    pub fn new(image: Image, boot: Boot) -> Self {
        Self {
            image,
            boot,
            memory_mib: 1024,
            extra: Vec::new(),
            monitor: false,
            uefi: false,
        }
    }

    /// Boots with `-kernel/-initrd` and the test command line plus `extra`;
    /// the serial console logs `rancher` in by itself ([`AUTOLOGIN_APPEND`]).
    pub fn kernel(image: Image, extra_append: &str) -> Self {
        Self::kernel_without_autologin(image, &format!("{AUTOLOGIN_APPEND} {extra_append}"))
    }

    /// Boots with `-kernel/-initrd` and the test command line plus `extra`
    /// alone: the serial console asks for a login unless `extra` says otherwise.
    pub fn kernel_without_autologin(image: Image, extra_append: &str) -> Self {
        let append = format!("{TEST_APPEND} {extra_append}").trim().to_string();
        Self::new(image, Boot::Kernel { append })
    }

    /// Boots the built kernel with an initrd of the test's own (no ISO
    /// needed) and exactly this command line.
    pub fn own_initrd(initrd: &Path, append: &str) -> Self {
        let dir = image_dir();
        let vmlinuz = dir.join("vmlinuz");
        assert!(
            vmlinuz.is_file(),
            "{} is missing: build the kernel first (`cargo run -p image-build -- kernel`)",
            vmlinuz.display()
        );
        let image = Image {
            vmlinuz,
            initrd: initrd.to_path_buf(),
            iso: PathBuf::new(),
        };
        Self::new(
            image,
            Boot::Kernel {
                append: append.to_string(),
            },
        )
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// A raw disk image on virtio: `/dev/vda` for the first, `vdb` next.
    pub fn drive(self, file: &Path) -> Self {
        self.arg("-drive")
            .arg(format!("file={},format=raw,if=virtio", file.display()))
    }

    /// A raw disk image on NVMe, as EC2's Nitro machines attach volumes:
    /// `/dev/nvme0n1` for the first.
    pub fn nvme(self, file: &Path) -> Self {
        let id = format!("nvme{}", next_id());
        self.arg("-drive")
            .arg(format!(
                "if=none,id={id},file={},format=raw",
                file.display()
            ))
            .arg("-device")
            .arg(format!("nvme,drive={id},serial={id}"))
    }

    /// Boots with UEFI firmware (OVMF, Debian package `ovmf`) instead of
    /// SeaBIOS. Each machine gets its own copy of the variable store, so
    /// boot entries one firmware run writes never reach another test.
    pub fn uefi(mut self) -> Self {
        self.uefi = true;
        self
    }

    /// More QEMU arguments (drives, network devices).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra.push(arg.into());
        self
    }

    pub fn args<const N: usize>(mut self, args: [&str; N]) -> Self {
        self.extra.extend(args.map(str::to_string));
        self
    }

    /// A QEMU monitor to send keys and power events with [`Vm::monitor`].
    pub fn with_monitor(mut self) -> Self {
        self.monitor = true;
        self
    }

    pub fn start(self) -> Vm {
        let again = self.clone();
        let monitor = self.monitor.then(|| {
            std::env::temp_dir().join(format!(
                "ros-qemu-monitor-{}-{}.sock",
                std::process::id(),
                next_id()
            ))
        });
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-accel", accelerator(&self.image)])
            .args(["-m", &self.memory_mib.to_string(), "-smp", "2"])
            .args(["-display", "none", "-no-reboot"]);
        match &monitor {
            Some(path) => command.args([
                "-monitor",
                &format!("unix:{},server,nowait", path.display()),
            ]),
            None => command.args(["-monitor", "none"]),
        };
        command
            .args([
                "-chardev",
                "stdio,id=console,signal=off",
                "-serial",
                "chardev:console",
            ])
            .args(["-device", "virtio-rng-pci"]);
        match &self.boot {
            Boot::Kernel { append } => {
                command.arg("-kernel").arg(&self.image.vmlinuz);
                command.arg("-initrd").arg(&self.image.initrd);
                command.args(["-append", append]);
            }
            Boot::Cdrom => {
                command
                    .arg("-cdrom")
                    .arg(&self.image.iso)
                    .args(["-boot", "d"]);
            }
            Boot::Disk => {
                command.args(["-boot", "c"]);
            }
        }
        // Resets and guest errors go to a log of their own: when QEMU ends
        // unasked, it tells whether the guest reset itself (a triple fault
        // under -no-reboot) or QEMU died.
        let qemu_log =
            std::env::temp_dir().join(format!("ros-qemu-{}-{}.log", std::process::id(), next_id()));
        command
            .args(["-d", "cpu_reset,guest_errors", "-D"])
            .arg(&qemu_log);
        let firmware_vars = self.uefi.then(|| {
            let vars = std::env::temp_dir().join(format!(
                "ros-qemu-ovmf-vars-{}-{}.fd",
                std::process::id(),
                next_id()
            ));
            std::fs::copy(OVMF_VARS, &vars)
                .unwrap_or_else(|e| panic!("copying {OVMF_VARS}: {e} (apt-get install ovmf)"));
            command
                .args(["-drive"])
                .arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
                ))
                .args(["-drive"])
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars.display()
                ));
            vars
        });
        command.args(&self.extra);
        let mut vm = Vm::spawn(command);
        vm.monitor = monitor;
        vm.qemu_log = Some(qemu_log);
        vm.firmware_vars = firmware_vars;
        vm.builder = Some(again);
        vm
    }
}

/// OVMF, the UEFI firmware for QEMU, from Debian's `ovmf`: the code
/// (read-only) and the pristine variable store each machine copies.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

fn next_id() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// KVM if it really runs a guest here, else TCG. Decided once per test
/// binary; `ROS_QEMU_ACCEL=kvm|tcg` skips the probe.
pub fn accelerator(image: &Image) -> &'static str {
    static CHOICE: OnceLock<&'static str> = OnceLock::new();
    CHOICE.get_or_init(|| match std::env::var("ROS_QEMU_ACCEL").as_deref() {
        Ok("kvm") => "kvm",
        Ok("tcg") => "tcg",
        _ => {
            let choice = if kvm_runs_a_guest(&image.vmlinuz) {
                "kvm"
            } else {
                "tcg"
            };
            eprintln!("qemu-tests: using {choice}");
            choice
        }
    })
}

/// Where /dev/kvm opens but cannot run a guest (nested virtualisation),
/// QEMU with KVM hangs silently: a kernel that prints nothing within a few
/// seconds means TCG.
fn kvm_runs_a_guest(vmlinuz: &Path) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args([
            "-accel",
            "kvm",
            "-m",
            "256",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .args(["-serial", "stdio", "-kernel"])
        .arg(vmlinuz)
        .args(["-append", "console=ttyS0 panic=-1"]);
    let mut vm = Vm::spawn(command);
    let printed = vm
        .wait_for("Linux version", Duration::from_secs(10))
        .is_ok();
    vm.kill();
    printed
}

/// What the console has printed so far, and whether QEMU has exited.
#[derive(Debug, Default)]
struct Console {
    output: String,
    /// stdout and stderr still open: QEMU's last words on stderr are read
    /// before the console counts as closed.
    open_streams: usize,
    closed: bool,
}

/// A console wait that ended without the text: what was awaited, why it
/// ended, and the console's last lines (the failure report of a test).
#[derive(Debug)]
pub struct WaitError {
    /// The text awaited.
    pub needle: String,
    /// QEMU's exit or the timeout.
    pub end: WaitEnd,
    /// Since QEMU started.
    pub after: Duration,
    /// The console's last 60 lines.
    pub tail: String,
}

/// Why a console wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitEnd {
    /// QEMU exited, with its own account of why.
    Exited(String),
    /// The timeout passed.
    TimedOut,
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.end {
            WaitEnd::Exited(report) => write!(f, "QEMU exited ({report})")?,
            WaitEnd::TimedOut => f.write_str("timed out")?,
        }
        write!(
            f,
            " after {:.1} s waiting for {:?}; console output:\n{}",
            self.after.as_secs_f64(),
            self.needle,
            self.tail
        )
    }
}

impl std::error::Error for WaitError {}

/// A running virtual machine and its serial console.
#[derive(Debug)]
pub struct Vm {
    child: Mutex<Child>,
    stdin: Option<ChildStdin>,
    console: Arc<(Mutex<Console>, Condvar)>,
    started: Instant,
    commands: usize,
    monitor: Option<PathBuf>,
    qemu_log: Option<PathBuf>,
    /// This machine's copy of the UEFI variable store, removed with it.
    firmware_vars: Option<PathBuf>,
    /// How to boot it again (see [`Vm::wait_ready`]); `None` once used.
    builder: Option<VmBuilder>,
    boots: usize,
}

/// The output and exit status of one console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub output: String,
    pub status: i32,
}

impl Vm {
    fn spawn(mut command: Command) -> Self {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .expect("qemu-system-x86_64 (apt-get install qemu-system-x86)");
        let console = Arc::new((
            Mutex::new(Console {
                open_streams: 2,
                ..Console::default()
            }),
            Condvar::new(),
        ));
        for stream in [
            Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped stderr")),
        ] {
            let console = Arc::clone(&console);
            std::thread::spawn(move || pump(stream, &console));
        }
        let stdin = child.stdin.take();
        Self {
            child: Mutex::new(child),
            stdin,
            console,
            started: Instant::now(),
            commands: 0,
            monitor: None,
            qemu_log: None,
            firmware_vars: None,
            builder: None,
            boots: 1,
        }
    }

    /// Everything the console printed so far (`\r` removed).
    pub fn output(&self) -> String {
        self.console
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .output
            .clone()
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until `needle` appears (anywhere in the output so far);
    /// returns the output up to and including it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String, WaitError> {
        self.wait_for_after(0, needle, timeout)
            .map(|end| self.output()[..end].to_string())
    }

    /// Waits until `needle` appears at or after byte `from` of the output
    /// (its length before a line was typed); returns the byte offset just
    /// past it.
    pub fn wait_for_since(
        &self,
        from: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<usize, WaitError> {
        self.wait_for_after(from, needle, timeout)
    }

    /// Waits until `needle` appears at or after byte `from`; returns the
    /// byte offset just past it.
    fn wait_for_after(
        &self,
        from: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<usize, WaitError> {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.console;
        let mut console = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(at) = console
                .output
                .get(from..)
                .and_then(|rest| rest.find(needle))
            {
                return Ok(from + at + needle.len());
            }
            let now = Instant::now();
            if console.closed || now >= deadline {
                let end = if console.closed {
                    WaitEnd::Exited(self.exit_report())
                } else {
                    WaitEnd::TimedOut
                };
                return Err(WaitError {
                    needle: needle.to_owned(),
                    end,
                    after: self.started.elapsed(),
                    tail: tail(&console.output, 60),
                });
            }
            console = changed
                .wait_timeout(console, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for `ros: ready in X s`; returns X as the guest measured it.
    ///
    /// A machine that goes down before `ros` printed a line and without a
    /// kernel panic never reached our code: the firmware or the kernel
    /// reset under TCG (seen once in CI, during PCI probing). It is booted
    /// once more, saying so with QEMU's own account; a second time fails.
    pub fn wait_ready(&mut self) -> Duration {
        let marker = "ros: ready in ";
        let out = match self.wait_for(marker, READY_TIMEOUT) {
            Ok(out) => out,
            Err(error) if self.went_down_before_ros() && self.builder.is_some() => {
                eprintln!(
                    "qemu-tests: {error}\nqemu-tests: the machine went down before ros started; booting it once more"
                );
                let builder = self.builder.take().expect("checked above");
                *self = builder.start();
                self.builder = None;
                self.boots = 2;
                self.wait_for(marker, READY_TIMEOUT)
                    .unwrap_or_else(|e| panic!("{e}"))
            }
            Err(error) => panic!("{error}"),
        };
        let end = self
            .wait_for_after(out.len(), " s", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
        let seconds = &self.output()[out.len()..end - 2];
        Duration::from_secs_f64(
            seconds
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad ready line: {seconds:?}")),
        )
    }

    /// How many times QEMU was started for this machine (2 after a reset
    /// before `ros` started).
    pub fn boots(&self) -> usize {
        self.boots
    }

    /// QEMU has exited, and neither `ros` nor a kernel panic said a word.
    fn went_down_before_ros(&self) -> bool {
        let (lock, _) = &*self.console;
        let console = lock.lock().unwrap_or_else(|p| p.into_inner());
        console.closed
            && !console.output.contains("ros:")
            && !console.output.contains("Kernel panic")
    }

    /// Types a line on the console.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("console input is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("writing to the console");
        stdin.flush().expect("writing to the console");
    }

    /// Waits until a shell answers on the console, and makes it a root
    /// shell: the console logs `rancher` in (autologin), which becomes root
    /// with `exec sudo -i`, as a person would, keeping the shell's pid.
    /// A shell that is root already stays as it is.
    pub fn wait_for_shell(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.wait_for_user_shell(timeout);
        self.send_line(r#"[ "$(id -u)" = 0 ] || exec sudo -i"#);
        loop {
            let from = self.output().len();
            // The echo of the typed line shows `$(id -u)`, not the uid.
            self.send_line(r#"echo "@@UID-$(id -u)@@""#);
            let answer = self.wait_for_after(from, "@@\n", Duration::from_secs(5));
            let text = self.output();
            if answer.is_ok() && text[from..].contains("@@UID-0@@\n") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the console shell did not become root (sudo -i):\n{}",
                tail(&text, 40)
            );
        }
    }

    /// Waits until a shell answers on the console, as whichever user it
    /// runs: getty discards what is typed before it runs, so this asks
    /// until there is an answer.
    pub fn wait_for_user_shell(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let from = self.output().len();
            // Quoted apart, so the echo of the typed line does not match.
            self.send_line("echo '@@SHELL''-UP@@'");
            if self
                .wait_for_after(from, "@@SHELL-UP@@", Duration::from_secs(1))
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no shell on the console:\n{}",
                tail(&self.output(), 40)
            );
        }
    }

    /// Waits until every enabled service has settled (none is starting or
    /// not yet started), as `ros service list` shows: the
    /// console, and so `ros: ready`, may come before the other services
    /// under load. Returns the last list.
    pub fn wait_for_services_settled(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let list = self.check("ros service list");
            let unsettled: Vec<&str> = list
                .lines()
                .skip(1)
                .filter(|line| {
                    let cells: Vec<&str> = line.split_whitespace().collect();
                    cells.get(1) == Some(&"enabled")
                        && matches!(cells.get(2), Some(&"starting" | &"not-started"))
                })
                .collect();
            if unsettled.is_empty() {
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "services not settled in {timeout:?}:\n{list}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Runs `command` in the console shell; returns its output and status.
    pub fn run(&mut self, command: &str) -> CommandOutput {
        self.run_within(command, COMMAND_TIMEOUT)
    }

    /// [`Vm::run`] for a command that may take longer than a minute.
    pub fn run_within(&mut self, command: &str, timeout: Duration) -> CommandOutput {
        self.commands += 1;
        let id = self.commands;
        let from = self.output().len();
        // Markers are quoted apart so the terminal's echo of the typed line
        // never matches them.
        self.send_line(&format!(
            "echo '@@BEGIN''-{id}@@'; {command}; echo \"@@END\"\"-{id}@@ $?\""
        ));
        let begin = format!("@@BEGIN-{id}@@\n");
        let end = format!("@@END-{id}@@ ");
        let start = self
            .wait_for_after(from, &begin, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("{command}: {e}"));
        let stop = self
            .wait_for_after(start, &end, timeout)
            .unwrap_or_else(|e| panic!("{command}: {e}"));
        let after = self
            .wait_for_after(stop, "\n", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
        let text = self.output();
        CommandOutput {
            output: text[start..stop - end.len()].to_string(),
            status: text[stop..after].trim().parse().unwrap_or(-1),
        }
    }

    /// Runs `command` and returns its output, failing the test unless it
    /// exits with 0.
    pub fn check(&mut self, command: &str) -> String {
        self.check_within(command, COMMAND_TIMEOUT)
    }

    /// [`Vm::check`] for a command that may take longer than a minute.
    pub fn check_within(&mut self, command: &str, timeout: Duration) -> String {
        let result = self.run_within(command, timeout);
        assert_eq!(result.status, 0, "`{command}` failed: {}", result.output);
        result.output
    }

    /// Waits for QEMU to exit by itself (power off with `-no-reboot`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "QEMU did not exit within {timeout:?}; console output:\n{}",
                tail(&self.output(), 60)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends one command to the QEMU monitor (`sendkey ctrl-alt-delete`,
    /// `system_powerdown`); needs [`VmBuilder::with_monitor`].
    pub fn monitor(&self, command: &str) {
        let path = self
            .monitor
            .as_ref()
            .expect("the VM was built with_monitor()");
        // QEMU makes the socket a moment after it starts.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut socket = loop {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(socket) => break socket,
                Err(e) if Instant::now() >= deadline => {
                    panic!("connecting to the QEMU monitor: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        socket
            .write_all(format!("{command}\n").as_bytes())
            .expect("writing to the QEMU monitor");
        // Give QEMU a moment to read it before the socket closes.
        std::thread::sleep(Duration::from_millis(500));
    }

    pub fn kill(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    fn try_wait(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_wait()
            .expect("waiting for QEMU")
    }

    /// How QEMU ended, with what its log says of resets and guest errors
    /// (register dumps left out).
    fn exit_report(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            match self.try_wait() {
                Some(status) => break status.to_string(),
                None if Instant::now() >= deadline => break "still running".to_string(),
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let log = self
            .qemu_log
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default();
        let events: Vec<&str> = log
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.contains('='))
            .collect();
        format!(
            "{status}; QEMU log: {}",
            events[events.len().saturating_sub(20)..].join(" | ")
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        for path in [&self.monitor, &self.qemu_log, &self.firmware_vars]
            .into_iter()
            .flatten()
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn pump(mut stream: Box<dyn Read + Send>, console: &(Mutex<Console>, Condvar)) {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        let (lock, changed) = console;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        if n == 0 {
            state.open_streams -= 1;
            state.closed = state.open_streams == 0;
            changed.notify_all();
            return;
        }
        state
            .output
            .push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
        changed.notify_all();
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The median of some durations.
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// An OpenStack config drive: vfat labelled `config-2` with
/// `openstack/latest/user_data`, built with dosfstools and mtools.
pub fn config_drive(dir: &Path, user_data: &str) -> PathBuf {
    config_drive_named(dir, "config-2.img", user_data.as_bytes(), 4 << 20)
}

/// A [`config_drive`] image `dir/name` of `len` bytes holding `user_data`.
pub fn config_drive_named(dir: &Path, name: &str, user_data: &[u8], len: u64) -> PathBuf {
    let image = dir.join(name);
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(len))
        .expect("a config drive image");
    let data = dir.join("user_data");
    std::fs::write(&data, user_data).expect("writing user_data");
    let run = |command: &mut Command| {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("{command:?}: {e} (apt-get install dosfstools mtools)"));
        assert!(output.status.success(), "{command:?}: {output:?}");
    };
    run(Command::new("mkfs.vfat")
        .args(["-n", "config-2"])
        .arg(&image));
    run(Command::new("mmd")
        .arg("-i")
        .arg(&image)
        .args(["::openstack", "::openstack/latest"]));
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&image)
        .arg(&data)
        .arg("::openstack/latest/user_data"));
    image
}

/// A blank 1 GiB disk image, `state.img` in `dir`: the first boot formats
/// it as the state partition.
pub fn blank_disk(dir: &Path) -> PathBuf {
    let disk = dir.join("state.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(1 << 30))
        .expect("a blank disk image");
    disk
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[test]
    fn median_of_three() {
        let s = Duration::from_secs;
        assert_eq!(median(vec![s(9), s(3), s(5)]), s(5));
    }

    /// The console protocol against a local shell standing in for QEMU.
    #[test]
    fn commands_return_output_and_status() {
        let mut command = Command::new("sh");
        command.arg("-s");
        let mut vm = Vm::spawn(command);
        vm.wait_for_shell(Duration::from_secs(10));
        assert_eq!(
            vm.run("echo hello; echo world"),
            CommandOutput {
                output: "hello\nworld\n".into(),
                status: 0
            }
        );
        assert_eq!(vm.run("false").status, 1);
        assert_eq!(vm.run("(exit 7)").status, 7);
        assert_eq!(vm.check("printf 'no newline'"), "no newline");
        vm.send_line("exit 3");
        assert_eq!(vm.wait_exit(Duration::from_secs(10)).code(), Some(3));
    }
}
