# Notices end to end, against real receivers on this machine: Debian's aiosmtpd (mail into a Maildir) and rsyslogd
# (its own unix socket and UDP port, lines into a file), started by tests/hosts/start-smtp.sh and start-syslog.sh,
# and a few lines of Python that write each POST they get to a file (the webhook). The settings go under a test root
# ($env:VMCHECKPOINT_SCHEDULE_ROOT), not into this machine's /etc. Mails are read back with Python's email package:
# an independent reader, not the library that wrote them.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $env:VMCHECKPOINT_SCHEDULE_ROOT = Join-Path $work 'root'
    $script:settingsFile = Join-Path $work 'root/etc/vmcheckpoint/notifications.json'

    function script:Get-FreePort {
        $l = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $l.Start()
        try { $l.LocalEndpoint.Port } finally { $l.Stop() }
    }

    $script:smtpRoot = Join-Path $work 'smtp'
    $out = & bash (Join-Path $PSScriptRoot '../hosts/start-smtp.sh') start $smtpRoot (Get-FreePort) 2>&1
    if ($LASTEXITCODE -ne 0) { throw "The SMTP server could not be started: $out" }
    $script:smtpPort, $script:maildir = "$(@($out)[-1])" -split ' '

    $script:syslogRoot = Join-Path $work 'syslog'
    $udpPort = [Net.Sockets.UdpClient]::new([Net.IPEndPoint]::new([Net.IPAddress]::Loopback, 0))
    $free = $udpPort.Client.LocalEndPoint.Port
    $udpPort.Dispose()
    $out = & bash (Join-Path $PSScriptRoot '../hosts/start-syslog.sh') start $syslogRoot $free 2>&1
    if ($LASTEXITCODE -ne 0) { throw "rsyslogd could not be started: $out" }
    $script:syslogSocket, $script:syslogPort, $script:syslogFile = "$(@($out)[-1])" -split ' '

    # The webhook: every POST body on a line of its own.
    $script:hookFile = Join-Path $work 'webhook.jsonl'
    $script:hookPort = Get-FreePort
    $hookScript = @'
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
        with open(out, 'ab') as f:
            f.write(body.replace(b'\n', b' ') + b'\n')
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(('127.0.0.1', port), Hook).serve_forever()
'@
    $hookPy = Join-Path $work 'webhook.py'
    Set-Content -Path $hookPy -Value $hookScript
    $script:hook = Start-Process /usr/bin/python3 -ArgumentList $hookPy, $hookPort, $hookFile -PassThru
    $deadline = [DateTime]::UtcNow.AddSeconds(10)
    while ($true) {
        try { [Net.Sockets.TcpClient]::new('127.0.0.1', $hookPort).Dispose(); break }
        catch { if ([DateTime]::UtcNow -gt $deadline) { throw "The webhook listener does not answer on $hookPort" }; Start-Sleep -Milliseconds 100 }
    }
    $script:hookUri = "http://127.0.0.1:$hookPort/hooks/vmckpt"

    # The mails in the Maildir, decoded by Python's email package: Subject, headers and text.
    function script:Get-Mail {
        $files = @(Get-ChildItem (Join-Path $maildir 'new') -File -ErrorAction SilentlyContinue)
        foreach ($f in $files) {
            $json = & /usr/bin/python3 -c @'
import email, email.policy, json, sys
with open(sys.argv[1], 'rb') as f:
    m = email.message_from_binary_file(f, policy=email.policy.default)
print(json.dumps({'Subject': m['subject'], 'From': m['from'], 'To': m['to'], 'Kind': m['x-vmcheckpoint-kind'], 'Body': m.get_content()}))
'@ $f.FullName
            $json | ConvertFrom-Json
        }
    }

    # Waits until a mail whose subject matches arrives; returns it.
    function script:Wait-Mail([string] $Pattern, [int] $Seconds = 15) {
        $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
        while ([DateTime]::UtcNow -lt $deadline) {
            $m = Get-Mail | Where-Object Subject -Match $Pattern | Select-Object -First 1
            if ($m) { return $m }
            Start-Sleep -Milliseconds 200
        }
        throw "No mail matching '$Pattern' in $maildir after $Seconds s"
    }

    function script:Wait-FileLine([string] $Path, [string] $Pattern, [int] $Seconds = 15) {
        $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
        while ([DateTime]::UtcNow -lt $deadline) {
            $line = Get-Content $Path -ErrorAction SilentlyContinue | Where-Object { $_ -match $Pattern } | Select-Object -First 1
            if ($line) { return $line }
            Start-Sleep -Milliseconds 200
        }
        throw "No line matching '$Pattern' in $Path after $Seconds s"
    }

    function script:Get-CronCommand([string] $File) {
        $line = Get-Content $File | Where-Object { $_ -match '^\S+ \S+ \S+ \S+ \S+ root ' }
        $line -replace '^(\S+ ){5}root ', ''
    }

    $script:allChannels = @{
        SmtpServer = '127.0.0.1'; Port = [int]$smtpPort; From = 'VmCheckpoint <backup@test.invalid>'; To = 'ops@test.invalid'
        Syslog = $true; SyslogServer = $syslogSocket; WebhookUri = $hookUri
    }
}
AfterAll {
    if ($hook) { Stop-Process -Id $hook.Id -ErrorAction SilentlyContinue }
    & bash (Join-Path $PSScriptRoot '../hosts/start-smtp.sh') stop $smtpRoot
    & bash (Join-Path $PSScriptRoot '../hosts/start-syslog.sh') stop $syslogRoot
    $env:VMCHECKPOINT_SCHEDULE_ROOT = $null
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Set-, Get- and Remove-VmCheckpointNotification' {
    It 'keeps the settings in a file only root reads, and never shows the password' {
        $password = ConvertTo-SecureString 'sm7p-s3cret' -AsPlainText -Force
        $credential = [pscredential]::new('backup', $password)
        Set-VmCheckpointNotification -SmtpServer smtp.test.invalid -Port 587 -UseSsl -Credential $credential -From backup@test.invalid -To ops@test.invalid, oncall@test.invalid

        & stat -c '%a' $settingsFile | Should -Be '600'
        Get-Content -Raw $settingsFile | Should -Match 'sm7p-s3cret'
        $s = Get-VmCheckpointNotification
        $s.SmtpServer | Should -Be 'smtp.test.invalid'
        $s.Port | Should -Be 587
        $s.UseSsl | Should -BeTrue
        $s.To | Should -Be @('ops@test.invalid', 'oncall@test.invalid')
        $s.UserName | Should -Be 'backup'
        $s.HasPassword | Should -BeTrue
        $s.On | Should -Be 'Failure'
        $s.Path | Should -Be $settingsFile
        $s.PSObject.Properties.Name | Should -Not -Contain 'Password'
        ($s | Format-List * | Out-String) | Should -Not -Match 'sm7p-s3cret'
    }

    It 'merges what it is given with what is stored' {
        Set-VmCheckpointNotification -On Always -WebhookUri $hookUri
        $s = Get-VmCheckpointNotification
        $s.On | Should -Be 'Always'
        $s.WebhookUri | Should -Be $hookUri
        $s.SmtpServer | Should -Be 'smtp.test.invalid'
        $s.HasPassword | Should -BeTrue
        Set-VmCheckpointNotification -SmtpServer '' -Credential ([pscredential]::Empty)
        $s = Get-VmCheckpointNotification
        $s.SmtpServer | Should -BeNullOrEmpty
        $s.HasPassword | Should -BeFalse
        $s.WebhookUri | Should -Be $hookUri
        Get-Content -Raw $settingsFile | Should -Not -Match 'sm7p-s3cret'
    }

    It 'changes nothing under -WhatIf, and refuses settings that could never deliver' {
        $before = Get-Content -Raw $settingsFile
        Set-VmCheckpointNotification -Syslog -WebhookUri '' -WhatIf
        Get-Content -Raw $settingsFile | Should -Be $before
        $e = { Set-VmCheckpointNotification -SmtpServer smtp.test.invalid -To 'not an address' -ErrorAction Stop } | Should -Throw -PassThru
        $e.FullyQualifiedErrorId | Should -BeLike 'SetNotification.InvalidArgument*'
        $e.Exception.Message | Should -Match 'not a mail address'
        $e = { Set-VmCheckpointNotification -WebhookUri 'ftp://x.test.invalid/' -ErrorAction Stop } | Should -Throw -PassThru
        $e.Exception.Message | Should -Match 'http or https'
        Get-Content -Raw $settingsFile | Should -Be $before
    }

    It 'removes the settings with -Confirm:$false' {
        Remove-VmCheckpointNotification -Confirm:$false
        Test-Path $settingsFile | Should -BeFalse
        Get-VmCheckpointNotification | Should -BeNullOrEmpty
        $e = { Remove-VmCheckpointNotification -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'sends a test notice through mail, rsyslog and the webhook with -Test' {
        $results = Set-VmCheckpointNotification @allChannels -Test
        $results.Channel | Should -Be @('syslog', 'mail', 'webhook')
        $results | ForEach-Object { $_.Succeeded | Should -BeTrue -Because "$_" }

        $mail = Wait-Mail 'test notice'
        $mail.Kind | Should -Be 'Test'
        $mail.To | Should -Be 'ops@test.invalid'
        $mail.Body | Should -Match 'Set-VmCheckpointNotification -Test'
        Wait-FileLine $syslogFile 'vmcheckpoint\[\d+\]: daemon\.notice .*test notice' | Should -Not -BeNullOrEmpty
        (Wait-FileLine $hookFile '"kind":\s*"Test"' | ConvertFrom-Json).source | Should -Be 'Set-VmCheckpointNotification -Test'
    }

    It 'works the same from the netstandard2.0 build (the one Windows PowerShell 5.1 and PowerShell 7.4 load)' {
        $log = Join-Path $work 'ns20.out'
        $env:VMCHECKPOINT_ASSEMBLIES = 'netstandard2.0'
        try {
            $p = Start-PwshScript -WorkingDirectory $work -StdOut $log -StdErr "$log.err" -Script @"
`$r = Set-VmCheckpointNotification -Test -SyslogServer '$syslogSocket'
if (@(`$r | Where-Object { -not `$_.Succeeded }).Count -gt 0 -or @(`$r).Count -ne 3) { throw "`$(`$r | Out-String)" }
(Get-Command Set-VmCheckpointNotification).DLL
"@
            $p.WaitForExit(120000) | Should -BeTrue
            $p.ExitCode | Should -Be 0 -Because (Get-Content "$log.err" -Raw)
        }
        finally { $env:VMCHECKPOINT_ASSEMBLIES = $null }
        Get-Content $log | Should -BeLike '*netstandard2.0*VmCheckpoint.PowerShell.dll'
        @(Get-Mail | Where-Object Subject -Match 'test notice').Count | Should -Be 2
    }
}

Describe 'A scheduled run that fails' {
    BeforeAll {
        $script:repo = Join-Path $work 'repo'
        New-VmCheckpointRepository -Path $repo | Out-Null
        Set-VmCheckpointNotification @allChannels -On Failure
    }

    It 'mails, logs and posts the schedule, the VM and the reason when its repository folder was deleted' {
        $s = Register-VmCheckpointSchedule -Name 'web-notify01' -Interval 01:00:00 -Scheduler Cron -ScheduleName notify-gone -Repository $repo
        Remove-Item $repo -Recurse -Force
        # As cron runs it: a child pwsh, the module imported by the command line the cron file holds.
        $err = & sh -c ((Get-CronCommand $s.Files[0]) + ' 2>&1')
        $LASTEXITCODE | Should -Not -Be 0
        "$err" | Should -Match 'does not exist or cannot be reached'

        $mail = Wait-Mail "schedule 'notify-gone' failed"
        $mail.Kind | Should -Be 'Failure'
        $mail.Body | Should -Match 'What: .*web-notify01'
        $mail.Body | Should -Match "Why: .*$([regex]::Escape($repo)) does not exist or cannot be reached"
        $mail.Body | Should -Match "Next step: Check that $([regex]::Escape($repo)) exists"
        $mail.Body | Should -Match "Invoke-VmCheckpointSchedule -Name 'notify-gone'"
        $mail.Body | Should -Match 'Schedule:\s+notify-gone'

        $line = Wait-FileLine $syslogFile "schedule 'notify-gone' failed"
        $line | Should -Match 'vmcheckpoint\[\d+\]: daemon\.err '
        $line | Should -Match 'web-notify01'
        $line | Should -Match 'does not exist or cannot be reached'

        $posted = Wait-FileLine $hookFile 'notify-gone' | ConvertFrom-Json
        $posted.kind | Should -Be 'Failure'
        $posted.source | Should -Be 'notify-gone'
        $posted.why | Should -Match 'does not exist or cannot be reached'

        $job = Get-VmCheckpointJob -Name 'web-notify01' -Last 1
        $job.Result | Should -Be 'Failed'
        $job.Error | Should -Match 'notify-gone'
    }

    It 'names a VM its host does not have, and why' {
        $null = & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh')
        New-VmCheckpointRepository -Path $repo | Out-Null
        Register-VmCheckpointSchedule -Name 'no-such-vm-notify' -Interval 01:00:00 -Scheduler Cron -ScheduleName notify-ghost -Repository $repo | Out-Null
        $thrown = $null
        try { Invoke-VmCheckpointSchedule -Name notify-ghost -ErrorAction Stop -WarningVariable warnings -WarningAction SilentlyContinue } catch { $thrown = $_ }
        $thrown | Should -Not -BeNullOrEmpty
        $warnings | Should -BeNullOrEmpty

        $mail = Wait-Mail "schedule 'notify-ghost' failed for 1 of 1 VMs"
        $mail.Body | Should -Match 'What: .*no-such-vm-notify failed'
        $mail.Body | Should -Match "Why: +no-such-vm-notify: .*no-such-vm-notify"
        $mail.Body | Should -Match 'Next step: Check the VM''s name'
        Wait-FileLine $syslogFile "schedule 'notify-ghost' failed for 1 of 1 VMs" | Should -Match 'no-such-vm-notify'
    }

    It 'still fails for its own reason, and still reaches the others, when one channel cannot deliver' {
        $dead = Get-FreePort
        Set-VmCheckpointNotification -SmtpServer 127.0.0.1 -Port $dead
        Remove-Item $repo -Recurse -Force
        $e = $null
        try { Invoke-VmCheckpointSchedule -Name notify-ghost -ErrorAction Stop -WarningVariable warnings -WarningAction SilentlyContinue } catch { $e = $_ }
        $e | Should -Not -BeNullOrEmpty
        $e.FullyQualifiedErrorId | Should -BeLike 'ScheduledRun.RepositoryUnreachable*'
        $warnings.Count | Should -Be 1
        "$warnings" | Should -Match "mail notice to 127.0.0.1:$dead failed"
        Wait-FileLine $syslogFile "schedule 'notify-ghost' failed on .*does not exist" | Should -Not -BeNullOrEmpty
        Wait-FileLine $hookFile '"source":\s*"notify-ghost".*does not exist' | Should -Not -BeNullOrEmpty
    }
}
