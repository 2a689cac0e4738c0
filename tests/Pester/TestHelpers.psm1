# Helpers shared by the Pester tests: real images made with qemu-img/qemu-io, real repositories in
# temporary folders, real child processes. Nothing here mocks VmCheckpoint.
Set-StrictMode -Version 3.0

function Get-TestModulePath {
    if ($env:VMCHECKPOINT_TEST_MODULE) { return $env:VMCHECKPOINT_TEST_MODULE }
    Join-Path $PSScriptRoot '../../out/VmCheckpoint'
}

function New-TestFolder {
    $path = Join-Path ([IO.Path]::GetTempPath()) ("vmckpt-pester-" + [guid]::NewGuid().ToString('N').Substring(0, 10))
    New-Item -ItemType Directory -Path $path | Out-Null
    $path
}

function Invoke-Qemu {
    param([Parameter(Mandatory)] [string] $Tool, [Parameter(ValueFromRemainingArguments)] [string[]] $Arguments)
    $output = & $Tool @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "$Tool $($Arguments -join ' ') failed ($LASTEXITCODE): $output" }
    $output
}

# A file of random bytes, for qemu-io 'write -s' (patterns would deduplicate to nothing).
function New-RandomFile {
    param([string] $Path, [int] $Length, [int] $Seed)
    $bytes = [byte[]]::new($Length)
    [Random]::new($Seed).NextBytes($bytes)
    [IO.File]::WriteAllBytes($Path, $bytes)
    $Path
}

# Creates an image with qemu-img and writes random data with qemu-io at the given offsets (bytes, 1 MiB each unless -Length).
function New-TestImage {
    param(
        [Parameter(Mandatory)] [string] $Path,
        [Parameter(Mandatory)] [long] $Size,
        [ValidateSet('qcow2', 'raw')] [string] $Format = 'qcow2',
        [long[]] $Offsets = @(),
        [int] $Length = 1MB,
        [int] $Seed = 1
    )
    Invoke-Qemu qemu-img create -q -f $Format $Path $Size | Out-Null
    Write-TestData -Path $Path -Format $Format -Offsets $Offsets -Length $Length -Seed $Seed
    $Path
}

function Write-TestData {
    param([string] $Path, [string] $Format = 'qcow2', [long[]] $Offsets, [int] $Length = 1MB, [int] $Seed = 1)
    if ($Offsets.Count -eq 0) { return }
    $random = Join-Path ([IO.Path]::GetDirectoryName($Path)) ".random-$Seed-$Length"
    $commands = @()
    $i = 0
    foreach ($offset in $Offsets) {
        $file = New-RandomFile -Path "$random-$i" -Length $Length -Seed ($Seed * 100003 + $i)
        $commands += @('-c', "write -q -s $file $offset $Length")
        $i++
    }
    Invoke-Qemu qemu-io -f $Format @commands $Path | Out-Null
    Remove-Item "$random-*"
}

# True when qemu-img compare says the two images hold the same guest bytes.
function Test-SameImage {
    param([string] $Expected, [string] $Actual)
    $output = & qemu-img compare $Expected $Actual 2>&1
    if ($LASTEXITCODE -ne 0) { Write-Host "qemu-img compare ${Expected} ${Actual}: $output" }
    $LASTEXITCODE -eq 0
}

function Test-ImageChecks {
    param([string] $Path)
    $output = & qemu-img check $Path 2>&1
    if ($LASTEXITCODE -ne 0) { Write-Host "qemu-img check ${Path}: $output" }
    $LASTEXITCODE -eq 0
}

# The command line of a fresh pwsh like this one (a dotnet tool runs as 'dotnet pwsh.dll').
function Get-PwshCommand {
    $exe = (Get-Process -Id $PID).Path
    if ([IO.Path]::GetFileNameWithoutExtension($exe) -eq 'dotnet') { return @($exe, [Environment]::GetCommandLineArgs()[0]) }
    @($exe)
}

# Starts a script in a child pwsh that imports the module; returns the Process.
function Start-PwshScript {
    param([string] $Script, [string] $WorkingDirectory, [string] $StdOut, [string] $StdErr)
    $cmd = Get-PwshCommand
    $full = "`$ErrorActionPreference = 'Stop'; Import-Module '$(Get-TestModulePath)'; " + $Script
    $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($full))
    $arguments = @($cmd | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-EncodedCommand', $encoded)
    $p = @{ FilePath = $cmd[0]; ArgumentList = $arguments; PassThru = $true; WorkingDirectory = $WorkingDirectory }
    if ($StdOut) { $p.RedirectStandardOutput = $StdOut }
    if ($StdErr) { $p.RedirectStandardError = $StdErr }
    Start-Process @p
}

function Get-RepositoryFiles {
    param([string] $Repository)
    Get-ChildItem $Repository -Recurse -File | Where-Object { $_.DirectoryName -notlike '*locks*' } |
        ForEach-Object { "$($_.FullName.Substring($Repository.Length)):$($_.Length)" } | Sort-Object
}

Export-ModuleMember -Function *
