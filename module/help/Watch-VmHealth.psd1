@{
    Synopsis    = 'Watches VMs and brings back those that crash, by themselves.'
    Description = 'Checks the VMs of a libvirt host at once when libvirt reports a lifecycle event (a VM stopped, crashed, was suspended), and every -Interval as a backstop. A VM is helped when it crashed (its qemu died: shut off, reason crashed), failed to start, or was paused on a disk I/O error; or when its host cannot be reached at all. A running libvirt VM whose QEMU guest agent holds its channel open (state connected) is also sent guest-ping, with 3 seconds to answer: no answer makes it Unresponsive (with libvirt''s message), and Restart power-cycles it; a VM without an agent channel, or whose agent is not connected, is not probed. A clean shutdown or a deliberate destroy is an administrator''s decision and is left alone.

-Action Auto (the default) first starts a crashed VM again in place, on its own disks, so that nothing it wrote since its last checkpoint is lost; only when that restart fails, or the VM crashes again within 10 minutes of it, is its latest checkpoint restored (then, with -TargetConnectionUri, on that host). A VM paused on an I/O error is restored at once. A restore never deletes the VM''s disk files: the restored disks go to a folder of their own under -RestorePath, and the VM is pointed at them. -Action Restart only starts the VM again in place. RestoreLatest restores its newest checkpoint that passes verification and resumes it from its memory state when the checkpoint has one (else boots it). RestoreElsewhere does so on -TargetConnectionUri, which is also where the watcher escalates when acting in place fails or the host is unreachable. Attempts per VM are capped by -MaxAttempts within an hour, with a back-off of -Cooldown doubled before each further attempt; attempts are counted in the catalog, so runs by a timer (-Once) honour them too.

Writes one event object per detection and per action to the pipeline and to the catalog''s health log (Get-VmHealthEvent). Runs until Ctrl+C or SIGTERM (systemctl stop), or once with -Once. Every long-running cmdlet stops on SIGTERM as on Ctrl+C: the job is cancelled and cleans up (a libvirt backup job, a new checkpoint or bitmap, temporary files) before the process ends, waiting up to 30 seconds for it.'
    Parameters  = @{
        Name                = 'The VMs to watch; every VM of the host by default.'
        ConnectionUri       = 'The libvirt host to watch (qemu:///system by default).'
        Action              = 'Auto (the default: restart in place, restore the latest checkpoint when that fails or the VM crashes again soon), Restart, RestoreLatest or RestoreElsewhere.'
        TargetConnectionUri = 'Another host to restore on when acting in place fails or the watched host cannot be reached: a libvirt URI, or with -Hypervisor HyperV a Hyper-V computer name (alias -TargetComputerName).'
        Once                = 'Check and act once, then return: for Task Scheduler and systemd timers.'
        MaxAttempts         = 'Attempts per VM within an hour before the watcher gives up on it (default 3).'
        Cooldown            = 'Wait before the second attempt on a VM, doubled before each further one (default 30 seconds).'
        Interval            = 'Time between backstop checks when running continuously (default 5 seconds); lifecycle events wake the watcher sooner.'
        FullRestore = 'Restore a crashed libvirt VM by writing its disks first and then starting it, as before instant restore. By default a libvirt VM is restored instantly: it runs at once on local overlays backed by the checkpoint''s export (Restore-VmCheckpoint -Instant) and its data is copied home in the background; the watcher follows the copy and finishes one that was interrupted. Hyper-V VMs are always restored in full.'
        RestorePath         = 'Folder for restored disks (default /var/lib/libvirt/images/vmcheckpoint-restored).'
        Hypervisor = 'The hypervisor of the watched VMs: Libvirt (the default) or HyperV. On Hyper-V a VM in a *Critical state is crashed (PausedCritical: paused on a storage error), a running VM whose heartbeat is LostCommunication has a guest that stopped answering, and Off is an administrators doing, left alone; Hyper-V is polled every -Interval.'
        ComputerName = 'With -Hypervisor HyperV: the Hyper-V hosts to watch, one or several, each by a watcher of its own in the same run (this computer by default).'
        Credential   = 'With -Hypervisor HyperV and -ComputerName: the account for the remote Hyper-V host (Get-Credential). Its Hyper-V commands get -Credential and its CIM calls (Resilient Change Tracking) one CIM session opened with it.'
        Repository  = 'The repository holding the VMs'' checkpoints: a folder, a share, or s3://bucket/prefix. Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file (its health log records every detection and action). Defaults to $env:VMCHECKPOINT_CATALOG, else under the local application data folder.'
        WhatIf              = 'Shows what would be watched without acting.'
        Confirm             = 'Asks for confirmation first.'
    }
    Examples    = @(
        @{ Title = 'Watch every VM, restoring crashed ones with their memory'; Code = 'Watch-VmHealth -Repository /mnt/backup/repo | Export-Csv /var/log/vm-health.csv -Append'; Remarks = 'Runs until Ctrl+C; one line per detection and action.' }
        @{ Title = 'From a systemd timer, with a second host as fallback'; Code = 'Watch-VmHealth -Once -TargetConnectionUri qemu+ssh://kvm02/system -MaxAttempts 2'; Remarks = 'Checks once and exits.' }
    )
}
