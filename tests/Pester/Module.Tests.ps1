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
        # SYNTAX as built-in cmdlets show it: -WhatIf and -Confirm where they apply, types by their own names.
        $full = Get-Help Restore-VmCheckpoint -Full | Out-String -Width 1000
        $full | Should -Match '\[-WhatIf\]\s+\[-Confirm\]'
        foreach ($c in $cmdlets) { Get-Help $c -Full | Out-String -Width 200 | Should -Not -Match 'Nullable' -Because "$c shows real type names" }
        (Get-Help Register-VmCheckpointSchedule -Full | Out-String -Width 200) | Should -Match '-At <TimeSpan>'
        # INPUTS name what binds from the pipeline; examples show a UNC path as it is typed.
        (Get-Help Get-VmCheckpoint -Full).inputTypes.inputType.type.name | Should -Contain 'System.String[]'
        (Get-Help Get-VmCheckpoint -Full | Out-String -Width 200) | Should -Match '-Name \(or VMName[^)]*\), by property name'
        (Get-Help Invoke-VmCheckpoint -Examples | Out-String -Width 200) | Should -Match ' \\\\nas\\backup\\vms'
        (Get-Help Invoke-VmCheckpoint -Examples | Out-String -Width 200) | Should -Not -Match '\\\\\\'
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

    It 'ships every assembly the netstandard2.0 build references, at the version referenced (Windows PowerShell 5.1 has no binding redirects)' {
        # Where two shipped assemblies want different versions of a third, the module resolves it when loaded
        # (VmCheckpoint.psm1 answers AssemblyResolve with the shipped one); this lists each such pair.
        $folder = Join-Path (Get-TestModulePath) 'netstandard2.0'
        $shipped = @{}
        foreach ($dll in Get-ChildItem $folder -Filter *.dll) { $shipped[[Reflection.AssemblyName]::GetAssemblyName($dll.FullName).Name] = [Reflection.AssemblyName]::GetAssemblyName($dll.FullName).Version }
        $shipped.Count | Should -BeGreaterThan 3
        $redirected = [Collections.Generic.List[string]]::new()
        # The resolver of the netstandard2.0 build, loaded in a child process (this one has the other build).
        $resolve = {
            param([string] $request)
            $script = "Add-Type -Path '$folder/VmCheckpoint.PowerShell.dll'; [VmCheckpoint.PowerShell.ModuleAssemblyResolver]::ShippedPathFor('$request')"
            $cmd = Get-PwshCommand
            & $cmd[0] @($cmd | Select-Object -Skip 1) -NoProfile -NonInteractive -Command $script
        }
        $missing = foreach ($dll in Get-ChildItem $folder -Filter *.dll) {
            $bytes = [IO.File]::ReadAllBytes($dll.FullName)
            $stream = [IO.MemoryStream]::new($bytes)
            $pe = [Reflection.PortableExecutable.PEReader]::new($stream)
            try {
                if (-not $pe.HasMetadata) { continue }
                $md = [Reflection.Metadata.PEReaderExtensions]::GetMetadataReader($pe)
                foreach ($handle in $md.AssemblyReferences) {
                    $ref = $md.GetAssemblyReference($handle)
                    $name = $md.GetString($ref.Name)
                    # What the framework itself provides (netstandard facade, mscorlib, System.*) is not shipped.
                    if (-not $shipped.ContainsKey($name)) { continue }
                    if ($shipped[$name] -lt $ref.Version) { "$($dll.Name) references $name $($ref.Version), but $($shipped[$name]) ships"; continue }
                    # .NET Framework binds a strong-named reference to that version exactly: the module's resolver
                    # must answer such a request with the shipped, newer file.
                    if (-not $ref.PublicKeyOrToken.IsNil -and $shipped[$name] -ne $ref.Version) {
                        $token = -join ($md.GetBlobBytes($ref.PublicKeyOrToken) | ForEach-Object { $_.ToString('x2') })
                        $request = "$name, Version=$($ref.Version), Culture=neutral, PublicKeyToken=$token"
                        $answer = & $resolve $request
                        if ($answer -ne (Join-Path $folder "$name.dll")) { "$($dll.Name) references $name $($ref.Version), $($shipped[$name]) ships, and nothing resolves one to the other" }
                        else { $redirected.Add($request) }
                    }
                }
            }
            finally { $pe.Dispose() }
        }
        $missing | Should -BeNullOrEmpty
        $redirected | Should -Contain 'System.Threading.Tasks.Extensions, Version=4.2.0.1, Culture=neutral, PublicKeyToken=cc7b13ffcd2ddd51'
    }
}
