"""labgrid drivers and strategy of the dmapingpong lab tests; the
environments (configs/labgrid/*.yaml) import this file ("imports:"), so that
pytest and labgrid-client both know them.

- DmapingpongQEMUDriver: labgrid's QEMUDriver that can also wait for QEMU
  to exit by itself (a clean power-off from the guest).
- DmapingpongStrategy: off -> shell (flashing the SD card first where the
  target has an SD mux), and a clean power-off from the shell.
"""

import enum
import subprocess

import attr
from pexpect import EOF, TIMEOUT

from labgrid.driver import QEMUDriver
from labgrid.driver.usbstoragedriver import Mode
from labgrid.factory import target_factory
from labgrid.step import step
from labgrid.strategy import Strategy, StrategyError, never_retry


def register(cls):
    """target_factory.reg_driver, once: every environment that imports this
    file runs it again (scripts/lab/check_envs.py loads several)."""
    if cls.__name__ not in target_factory.all_classes:
        target_factory.reg_driver(cls)
    return cls


@register
@attr.s(eq=False)
class DmapingpongQEMUDriver(QEMUDriver):
    """QEMUDriver with an initramfs (initrd: a key of the environment's
    images) whose guest may power itself off: wait_exit() waits for the
    QEMU process to end and returns its exit status."""

    initrd = attr.ib(default=None, validator=attr.validators.optional(attr.validators.instance_of(str)))

    def get_qemu_base_args(self):
        cmd = super().get_qemu_base_args()
        if self.initrd is not None:
            cmd += ["-initrd", self.target.env.config.get_image_path(self.initrd)]
        return cmd

    def _read(self, size=1, timeout=10, max_size=None):
        # A QEMU that exited (a panic with panic=-1 and -no-reboot, a crash)
        # closes the console socket: end of file, not data nor a timeout,
        # so that the test waiting on the console fails at once.
        data = super()._read(size=size, timeout=timeout, max_size=max_size)
        if not data:
            raise EOF(f"QEMU exited (status {self._child.poll() if self._child else 'unknown'})")
        return data

    def off(self):
        # QEMU that already exited (killed, crashed) has no monitor to quit.
        if self.status and self._child.poll() is not None:
            self._child.communicate()
            self._child = None
            self.status = 0
            return
        super().off()

    def wait_exit(self, timeout):
        if not self.status:
            raise StrategyError("QEMU is not running")
        try:
            rc = self._child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._child.communicate()
        self._child = None
        self.status = 0
        return rc


class Status(enum.Enum):
    unknown = 0
    off = 1
    shell = 2


@register
@attr.s(eq=False)
class DmapingpongStrategy(Strategy):
    """off -> shell: power off, write the image if the target has an SD mux
    (USBSDMuxDriver + USBStorageDriver, image "sdcard" of the environment,
    with bmaptool), power on, log in on the console. poweroff(): the guest's
    own power-off, then the power switch off."""

    bindings = {
        "power": "PowerProtocol",
        "console": "ConsoleProtocol",
        "shell": "ShellDriver",
        "sdmux": {"USBSDMuxDriver", None},
        "storage": {"USBStorageDriver", None},
    }

    status = attr.ib(default=Status.unknown, init=False)

    def _flash(self):
        if self.sdmux is None or self.storage is None:
            return
        self.target.activate(self.sdmux)
        self.sdmux.set_mode("host")
        self.target.activate(self.storage)
        self.storage.write_image(mode=Mode.BMAPTOOL)
        self.sdmux.set_mode("dut")

    @never_retry
    @step(args=["status"])
    def transition(self, status, *, step):  # pylint: disable=redefined-outer-name
        if not isinstance(status, Status):
            status = Status[status]
        if status == self.status:
            step.skip("nothing to do")
            return
        if status == Status.off:
            self.target.deactivate(self.shell)
            self.target.activate(self.power)
            self.power.off()
        elif status == Status.shell:
            self.transition(Status.off)
            self._flash()
            self.target.activate(self.console)
            self.power.on()
            self.target.activate(self.shell)
        else:
            raise StrategyError(f"no transition to {status}")
        self.status = status

    @step()
    def poweroff(self, timeout=120):
        """The guest powers itself off ("poweroff" in the shell: init stops
        the services). Returns (clean, console): clean if the kernel reached
        "reboot: Power down" and, on QEMU, QEMU exited with status 0 by
        itself; console, what the console printed on the way (the kernel's
        messages too: the console log level is raised first). The power
        switch is turned off and the state is off, whatever happens."""
        if self.status != Status.shell:
            raise StrategyError("poweroff needs the shell state")
        clean = False
        console = ""
        try:
            self.shell.run("dmesg -n 8")
            self.target.deactivate(self.shell)
            self.console.sendline("poweroff")
            _, before, match, _ = self.console.expect("reboot: Power down", timeout=timeout)
            console = (before + match.group(0)).decode("utf-8", "replace")
            clean = True
            wait_exit = getattr(self.power, "wait_exit", None)
            if wait_exit is not None:
                clean = wait_exit(timeout=30) == 0
        except (TIMEOUT, EOF, OSError) as e:
            console = f"{e}"
        finally:
            self.target.deactivate(self.shell)
            self.power.off()
            self.status = Status.off
        return clean, console
