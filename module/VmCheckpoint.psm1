# Loads the cmdlet assembly built for this PowerShell. PowerShell 7.6 and later on Linux x64 (.NET 10) get the build
# compiled ReadyToRun: precompiled, each process that imports the module starts about 0.4 s sooner, which counts for
# the short runs of schedules and watchers. Everything else (Windows PowerShell 5.1, PowerShell 7.4 and 7.5, other
# platforms) gets the netstandard2.0 build: the same code, compiled when it runs. VMCHECKPOINT_ASSEMBLIES names one
# folder explicitly (the tests load each build this way).
$flavour = 'netstandard2.0'
if ($PSVersionTable.PSEdition -eq 'Core' -and [Environment]::Version.Major -ge 10 -and $IsLinux -and
    [System.Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture -eq [System.Runtime.InteropServices.Architecture]::X64 -and
    (Test-Path -LiteralPath (Join-Path $PSScriptRoot 'net10.0-linux-x64/VmCheckpoint.PowerShell.dll'))) {
    $flavour = 'net10.0-linux-x64'
}
if ($env:VMCHECKPOINT_ASSEMBLIES) { $flavour = $env:VMCHECKPOINT_ASSEMBLIES }
Import-Module -Name (Join-Path $PSScriptRoot "$flavour/VmCheckpoint.PowerShell.dll")
# Output that goes to a file, a pipe or a scheduler's log carries no colour codes: PowerShell 7 still writes them for
# tables, lists and errors when stdout is redirected, unless NO_COLOR or PlainText says otherwise.
if ($PSStyle -and $PSStyle.OutputRendering -eq 'Host' -and [Console]::IsOutputRedirected) {
    $PSStyle.OutputRendering = 'PlainText'
}
Export-ModuleMember -Cmdlet *
