# Encrypted repositories through the cmdlets, on a real folder: passwords from -Password, -PasswordFile and the
# environment (a separate pwsh process, as a scheduled run), a wrong password refused as a SecurityError that writes
# nothing, tampering found by Test-VmCheckpoint and refused by Restore-VmCheckpoint, passwords changed and added, and a
# checkpoint mounted through an export server (a separate process that is handed the key, never the password).
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    Remove-Item Env:VMCHECKPOINT_PASSWORD, Env:VMCHECKPOINT_PASSWORD_FILE -ErrorAction SilentlyContinue
    $script:pwFile = Join-Path $work 'password'
    Set-Content -Path $pwFile -Value 'correct horse battery staple'
    $script:repo = Join-Path $work 'repo'
    # An ext4 file system on the whole disk, with a file that shows in clear in an unencrypted image.
    $script:disk = Join-Path $work 'payroll-disk.raw'
    & truncate -s 48M $disk
    & mkfs.ext4 -q -F $disk | Out-Null
    $script:marker = 'PAYROLL-MARKER-' + ('x' * 64)
    $mnt = Join-Path $work 'fill'
    New-Item -ItemType Directory $mnt | Out-Null
    & mount -o loop $disk $mnt; if ($LASTEXITCODE -ne 0) { throw 'mount failed' }
    try { Set-Content -Path (Join-Path $mnt 'payroll.txt') -Value (@($marker) * 2000) } finally { & umount $mnt }
    Remove-Item $mnt

    function script:Test-FileHolds([string] $Path, [string] $Text) {
        $hit = & grep -rlaF -- $Text $Path
        [bool]$hit
    }
    # The error record a command stops with (terminating errors are not ruled by -ErrorAction).
    function script:Get-ErrorOf([scriptblock] $Command) {
        try { & $Command; $null } catch { $_ }
    }
    function script:Get-RepositoryBytes([string] $Repository) {
        Get-ChildItem $Repository -Recurse -File | Where-Object { $_.DirectoryName -notlike '*locks*' } |
            ForEach-Object { "$($_.FullName.Substring($Repository.Length)):$((Get-FileHash $_.FullName).Hash)" } | Sort-Object
    }
}
AfterAll {
    Dismount-VmCheckpoint -Path (Join-Path $work 'mnt') -ErrorAction SilentlyContinue
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
    Remove-Item Env:VMCHECKPOINT_PASSWORD, Env:VMCHECKPOINT_PASSWORD_FILE -ErrorAction SilentlyContinue
}

Describe 'Encrypted repositories' {
    It 'refuses -Encrypt without a password, and creates nothing' {
        $target = Join-Path $work 'no-password'
        { New-VmCheckpointRepository -Path $target -Encrypt -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryPassword*'
        (Get-ErrorOf { New-VmCheckpointRepository -Path $target -Encrypt }).CategoryInfo.Category | Should -Be 'SecurityError'
        Test-Path $target | Should -BeFalse
    }

    It 'creates an encrypted repository, checkpoints into it, and stores nothing of the disk or its name in clear' {
        $r = New-VmCheckpointRepository -Path $repo -Encrypt -PasswordFile $pwFile
        $r.Encrypted | Should -BeTrue
        $r.Encryption | Should -Be 'aes-256-gcm'
        Test-FileHolds $disk $marker | Should -BeTrue   # the probe finds the marker where it is in clear
        $script:cp = Invoke-VmCheckpoint -Name payroll-db -DiskPath $disk -Repository $repo -PasswordFile $pwFile
        $cp.VmName | Should -Be 'payroll-db'
        Test-FileHolds $repo $marker | Should -BeFalse
        Test-FileHolds $repo 'payroll' | Should -BeFalse
        @(Get-ChildItem $repo -Recurse | Where-Object Name -like '*payroll*').Count | Should -Be 0
    }

    It 'restores in another process given the password only by $env:VMCHECKPOINT_PASSWORD, equal to the disk (qemu-img compare)' {
        $out = Join-Path $work 'restored-env'
        $env:VMCHECKPOINT_PASSWORD = 'correct horse battery staple'
        try {
            $p = Start-PwshScript -Script "Restore-VmCheckpoint -Name payroll-db -Destination '$out' -DiskFormat qcow2 -Repository '$repo' | Out-Null" -StdErr (Join-Path $work 'env.err') -WorkingDirectory $work
            $p.WaitForExit()
        } finally { Remove-Item Env:VMCHECKPOINT_PASSWORD }
        $p.ExitCode | Should -Be 0
        Get-Content (Join-Path $work 'env.err') -Raw | Should -Not -Match 'S="Error"' # (progress records are CLIXML on stderr)
        $restored = Get-ChildItem $out -File | Select-Object -First 1
        Test-SameImage $disk $restored.FullName | Should -BeTrue
    }

    It 'refuses a wrong or missing password in a new process as a SecurityError, reading and writing nothing' {
        $before = Get-RepositoryBytes $repo
        $script = "foreach (`$pw in @('wrong', `$null)) { if (`$pw) { `$env:VMCHECKPOINT_PASSWORD = `$pw } else { Remove-Item Env:VMCHECKPOINT_PASSWORD }; " +
            "try { Invoke-VmCheckpoint -Name payroll-db -DiskPath '$disk' -Repository '$repo'; 'no error' } catch { '{0}|{1}' -f `$_.CategoryInfo.Category, `$_.Exception.Message } }"
        $p = Start-PwshScript -Script $script -StdOut (Join-Path $work 'wrong.out') -StdErr (Join-Path $work 'wrong.err') -WorkingDirectory $work
        $p.WaitForExit()
        $lines = Get-Content (Join-Path $work 'wrong.out')
        $lines.Count | Should -Be 2
        $lines[0] | Should -BeLike 'SecurityError|*wrong password*'
        $lines[1] | Should -BeLike 'SecurityError|*VMCHECKPOINT_PASSWORD*'
        Get-RepositoryBytes $repo | Should -Be $before
        @(Get-VmCheckpoint -Name payroll-db -Repository $repo -PasswordFile $pwFile).Count | Should -Be 1
    }

    It 'changes the password without rewriting data: the old one stops working, an added one works beside' {
        $old = ConvertTo-SecureString 'correct horse battery staple' -AsPlainText -Force
        $new = ConvertTo-SecureString 'new password' -AsPlainText -Force
        $data = Get-RepositoryBytes $repo | Where-Object { $_ -notlike '/keys/*' }
        { Set-VmCheckpointRepositoryPassword -Repository $repo -NewPassword $new -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'CurrentPasswordNotGiven*'
        $r = Set-VmCheckpointRepositoryPassword -Repository $repo -Password $old -NewPassword $new -Confirm:$false
        $r.Action | Should -Be 'Changed'
        $r.Passwords | Should -Be 1
        (Get-ErrorOf { Set-VmCheckpointRepositoryPassword -Repository $repo -Password $old -NewPasswordFile $pwFile -Add -Confirm:$false }).CategoryInfo.Category | Should -Be 'SecurityError'
        $r = Set-VmCheckpointRepositoryPassword -Repository $repo -Password $new -NewPasswordFile $pwFile -Add -Confirm:$false
        $r.Action | Should -Be 'Added'
        $r.Passwords | Should -Be 2
        (Get-VmCheckpoint -Name payroll-db -Repository $repo -Password $new).Id | Should -Be $cp.Id
        (Get-RepositoryBytes $repo | Where-Object { $_ -notlike '/keys/*' }) | Should -Be $data
    }

    It 'mounts an encrypted checkpoint through an export server that is handed the key and leaves no key file behind' {
        $mnt = Join-Path $work 'mnt'
        $env:VMCHECKPOINT_PASSWORD = 'correct horse battery staple'
        try { $fs = Mount-VmCheckpoint -Name payroll-db -Path $mnt -Repository $repo } finally { Remove-Item Env:VMCHECKPOINT_PASSWORD }
        # The server has the key it was handed, and no password in its environment.
        $server = Get-ChildItem /run/vmcheckpoint/exports -Directory | ForEach-Object { Join-Path $_.FullName 'server.json' } |
            Where-Object { Test-Path $_ } | ForEach-Object { Get-Content -Raw $_ | ConvertFrom-Json } | Where-Object CheckpointId -eq $cp.Id
        @($server).Count | Should -Be 1
        $environ = [Text.Encoding]::UTF8.GetString([IO.File]::ReadAllBytes("/proc/$($server.ProcessId)/environ"))
        $environ | Should -Not -Match 'VMCHECKPOINT_PASSWORD'
        $fs.FileSystem | Should -Be 'ext4'
        $text = Get-Content (Get-ChildItem $mnt -Recurse -Filter payroll.txt | Select-Object -First 1).FullName
        $text.Count | Should -Be 2000
        $text[0] | Should -Be $marker
        @(Get-ChildItem /run/vmcheckpoint/exports -Recurse -Filter master.key -ErrorAction SilentlyContinue).Count | Should -Be 0
        Dismount-VmCheckpoint -Path $mnt
        Test-Path $mnt | Should -BeFalse
    }

    It 'finds a flipped byte with Test-VmCheckpoint -ReadData, and Restore-VmCheckpoint refuses it, writing no disk' {
        $copy = Join-Path $work 'tampered'
        Copy-Item $repo $copy -Recurse
        $pack = Get-ChildItem (Join-Path $copy 'packs') -Recurse -Filter *.pack | Sort-Object Length -Descending | Select-Object -First 1
        $bytes = [IO.File]::ReadAllBytes($pack.FullName)
        $bytes[[int]($bytes.Length / 2)] = $bytes[[int]($bytes.Length / 2)] -bxor 0x10
        [IO.File]::WriteAllBytes($pack.FullName, $bytes)
        $t = Test-VmCheckpoint -Repository $copy -ReadData -PasswordFile $pwFile -ErrorAction SilentlyContinue -WarningAction SilentlyContinue
        $t.Status | Should -Be 'Damaged'
        $out = Join-Path $work 'restored-tampered'
        { Restore-VmCheckpoint -Name payroll-db -Destination $out -Repository $copy -PasswordFile $pwFile -ErrorAction Stop } | Should -Throw
        @(Get-ChildItem $out -File -ErrorAction SilentlyContinue).Count | Should -Be 0
    }

    It 'refuses a schedule of an encrypted repository without a password file, and records the file, never the password' {
        $env:VMCHECKPOINT_SCHEDULE_ROOT = Join-Path $work 'schedules'
        try {
            $err = Get-ErrorOf { Register-VmCheckpointSchedule -Name payroll-db -Interval 01:00:00 -Repository $repo -Password (ConvertTo-SecureString 'new password' -AsPlainText -Force) -Scheduler Cron }
            $err.FullyQualifiedErrorId | Should -BeLike 'SchedulePasswordFile*'
            $err.CategoryInfo.Category | Should -Be 'SecurityError'
            # A password file that does not open the repository fails now, not at night.
            $badFile = Join-Path $work 'wrong-password'
            Set-Content -Path $badFile -Value 'not the password'
            $err = Get-ErrorOf { Register-VmCheckpointSchedule -Name payroll-db -Interval 01:00:00 -Repository $repo -PasswordFile $badFile -Scheduler Cron }
            $err.FullyQualifiedErrorId | Should -BeLike '*.RepositoryPassword,*'
            $err.Exception.Message | Should -BeLike "*$badFile*wrong password*"
            $err.CategoryInfo.Category | Should -Be 'SecurityError'
            @(Get-VmCheckpointSchedule).Count | Should -Be 0
            $s = Register-VmCheckpointSchedule -Name payroll-db -Interval 01:00:00 -Repository $repo -PasswordFile $pwFile -Scheduler Cron
            $s.PasswordFile | Should -Be $pwFile
            $written = Get-ChildItem $env:VMCHECKPOINT_SCHEDULE_ROOT -Recurse -File
            ($written | Where-Object { Test-FileHolds $_.FullName $pwFile }).Count | Should -BeGreaterThan 0
            ($written | Where-Object { Test-FileHolds $_.FullName 'correct horse' }).Count | Should -Be 0
            Unregister-VmCheckpointSchedule -Name $s.Name -Confirm:$false
        } finally { Remove-Item Env:VMCHECKPOINT_SCHEDULE_ROOT }
    }
}
