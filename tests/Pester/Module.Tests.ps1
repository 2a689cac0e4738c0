BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    $disk = New-TestImage -Path (Join-Path $work 'c.qcow2') -Size 8MB -Offsets 0
    $script:ck = Invoke-VmCheckpoint -Name "web server 01" -DiskPath $disk -Repository $repo
    Invoke-VmCheckpoint -Name 'db01' -DiskPath $disk -Repository $repo | Out-Null
    $script:cmdlets = (Get-Command -Module VmCheckpoint).Name
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'The module' {
    It 'exports the documented cmdlets with approved verbs' {
        $cmdlets | Should -Contain 'Invoke-VmCheckpoint'
        $cmdlets | Should -Contain 'Restore-VmCheckpoint'
        $approved = (Get-Verb).Verb
        foreach ($c in $cmdlets) { $approved | Should -Contain ($c -split '-')[0] }
    }

    It 'has help with examples for every cmdlet' {
        foreach ($c in $cmdlets) {
            $help = Get-Help $c -Full
            $help.Synopsis | Should -Not -BeLike "*$c*[[]*"   # a real synopsis, not the generated syntax
            @($help.Examples.Example).Count | Should -BeGreaterThan 0 -Because "$c needs examples"
            foreach ($p in $help.Parameters.Parameter) { "$($p.Description.Text)" | Should -Not -BeNullOrEmpty -Because "$c -$($p.Name) needs a description" }
        }
        Get-Help Invoke-VmCheckpoint -Examples | Out-String | Should -Match 'Invoke-VmCheckpoint -Name web01'
        Get-Help about_VmCheckpoint | Out-String | Should -Match 'VMCHECKPOINT_REPOSITORY'
    }

    It 'loads the ReadyToRun build on PowerShell 7.6+ for Linux x64' {
        $dll = (Get-Command Invoke-VmCheckpoint).DLL
        if ($IsLinux -and [Environment]::Version.Major -ge 10 -and [Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture -eq 'X64') {
            $dll | Should -BeLike '*net10.0-linux-x64*VmCheckpoint.PowerShell.dll'
        }
        else {
            $dll | Should -BeLike '*netstandard2.0*VmCheckpoint.PowerShell.dll'
        }
    }

    It 'works the same with the netstandard2.0 build (the one Windows PowerShell 5.1 and PowerShell 7.4 load)' {
        # A child process, told to load the other build: checkpoint, restore, compare.
        $image = New-TestImage -Path (Join-Path $work 'ns20.qcow2') -Size 8MB -Offsets 0, 7MB -Seed 21
        $out = Join-Path $work 'ns20-restore'
        $log = Join-Path $work 'ns20.out'
        $loaded = Join-Path $work 'ns20.dll.txt'
        $ns20repo = Join-Path $work 'ns20-repo'
        $env:VMCHECKPOINT_ASSEMBLIES = 'netstandard2.0'
        try {
            $p = Start-PwshScript -WorkingDirectory $work -StdOut $log -StdErr "$log.err" -Script @"
`$ProgressPreference = 'SilentlyContinue'
`$env:VMCHECKPOINT_CATALOG = '$(Join-Path $work 'ns20.db')'
(Get-Command Invoke-VmCheckpoint).DLL | Set-Content '$loaded'
New-VmCheckpointRepository -Path '$ns20repo' | Out-Null
`$c = Invoke-VmCheckpoint -Name ns20 -DiskPath '$image' -Repository '$ns20repo'
`$c | Restore-VmCheckpoint -Destination '$out' -Repository '$ns20repo' | Out-Null
"@
            $p.WaitForExit(120000) | Should -BeTrue
            $p.ExitCode | Should -Be 0 -Because (Get-Content "$log.err" -Raw)
        }
        finally { $env:VMCHECKPOINT_ASSEMBLIES = $null }
        Get-Content $loaded | Should -BeLike '*netstandard2.0*VmCheckpoint.PowerShell.dll'
        Test-SameImage $image (Join-Path $out 'ns20.qcow2') | Should -BeTrue
    }

    It 'completes VM names, quoting names with spaces' {
        $line = "Get-VmCheckpoint -Repository '$repo' -Name we"
        $r = TabExpansion2 -inputScript $line -cursorColumn $line.Length
        $r.CompletionMatches.CompletionText | Should -Be "'web server 01'"
        $line = "Restore-VmCheckpoint -Repository '$repo' -Name "
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be @('db01', "'web server 01'")
    }

    It 'completes checkpoint ids of the named VM' {
        $line = "Restore-VmCheckpoint -Repository '$repo' -Name 'web server 01' -Id "
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be $ck.Id
    }
}
