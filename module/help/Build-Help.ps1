<#
.SYNOPSIS
    Writes the module's MAML help (en-US/VmCheckpoint.PowerShell.dll-Help.xml) from module/help/<Cmdlet>.psd1
    (synopsis, description, parameter texts, examples) and the cmdlets' own metadata (syntax, types, pipeline).
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $SourcePath
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force
# -WhatIf and -Confirm are listed like the cmdlet's own parameters (as Get-Help shows them for built-in cmdlets);
# the other common parameters are <CommonParameters>.
$common = [System.Management.Automation.Cmdlet]::CommonParameters + @('UseTransaction')
$standard = @{
    WhatIf  = 'Shows what the cmdlet would do, and does nothing.'
    Confirm = 'Asks for confirmation before each change.'
    Password = 'The password of an encrypted repository (New-VmCheckpointRepository -Encrypt), as a SecureString (Read-Host -AsSecureString). Defaults to $env:VMCHECKPOINT_PASSWORD, else the file $env:VMCHECKPOINT_PASSWORD_FILE names, else the key this session already unlocked the repository with. A wrong password is a SecurityError and nothing is read or written. Unencrypted repositories ignore it.'
    PasswordFile = 'A file whose first line is the password of an encrypted repository (for unattended runs: readable by root only). Defaults to $env:VMCHECKPOINT_PASSWORD_FILE.'
}

# A parameter's type as an admin reads it: Nullable`1[TimeSpan] is a TimeSpan that may be left out.
function TypeName([type] $t) {
    $inner = [Nullable]::GetUnderlyingType($t)
    if ($inner) { $t = $inner }
    $t.Name
}
function FullTypeName([type] $t) {
    $inner = [Nullable]::GetUnderlyingType($t)
    if ($inner) { $t = $inner }
    $t.FullName
}

function X([string] $s) { [System.Security.SecurityElement]::Escape($s) }
function Para([string] $text) { ($text -split "`n`n" | ForEach-Object { "<maml:para>$(X $_.Trim())</maml:para>" }) -join '' }

$sb = [System.Text.StringBuilder]::new()
[void]$sb.AppendLine('<?xml version="1.0" encoding="utf-8"?>')
[void]$sb.AppendLine('<helpItems schema="maml" xmlns="http://msh" xmlns:maml="http://schemas.microsoft.com/maml/2004/10" xmlns:command="http://schemas.microsoft.com/maml/dev/command/2004/10" xmlns:dev="http://schemas.microsoft.com/maml/dev/2004/10">')
foreach ($cmd in Get-Command -Module VmCheckpoint -CommandType Cmdlet | Sort-Object Name) {
    $file = Join-Path $SourcePath "$($cmd.Name).psd1"
    if (-not (Test-Path $file)) { throw "No help source $file for $($cmd.Name)." }
    $h = Import-PowerShellDataFile $file
    $verb, $noun = $cmd.Name -split '-', 2
    [void]$sb.AppendLine('<command:command>')
    [void]$sb.AppendLine("<command:details><command:name>$($cmd.Name)</command:name><command:verb>$verb</command:verb><command:noun>$noun</command:noun><maml:description>$(Para $h.Synopsis)</maml:description></command:details>")
    [void]$sb.AppendLine("<maml:description>$(Para $h.Description)</maml:description>")
    [void]$sb.AppendLine('<command:syntax>')
    foreach ($set in $cmd.ParameterSets) {
        [void]$sb.Append("<command:syntaxItem><maml:name>$($cmd.Name)</maml:name>")
        foreach ($p in $set.Parameters | Where-Object Name -NotIn $common) {
            $pos = if ($p.Position -ge 0) { $p.Position } else { 'named' }
            [void]$sb.Append("<command:parameter required=`"$($p.IsMandatory.ToString().ToLower())`" position=`"$pos`"><maml:name>$($p.Name)</maml:name>")
            if ($p.ParameterType -ne [System.Management.Automation.SwitchParameter]) {
                [void]$sb.Append("<command:parameterValue required=`"true`">$(X (TypeName $p.ParameterType))</command:parameterValue>")
            }
            [void]$sb.Append('</command:parameter>')
        }
        [void]$sb.AppendLine('</command:syntaxItem>')
    }
    [void]$sb.AppendLine('</command:syntax>')
    [void]$sb.AppendLine('<command:parameters>')
    foreach ($p in $cmd.Parameters.Values | Where-Object Name -NotIn $common) {
        $text = $h.Parameters[$p.Name]
        if (-not $text) { $text = $standard[$p.Name] }
        if (-not $text) { throw "Help for $($cmd.Name) does not describe -$($p.Name)." }
        $attr = $p.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] } | Select-Object -First 1
        $pipeline = if ($attr.ValueFromPipelineByPropertyName) { 'true (ByPropertyName)' } elseif ($attr.ValueFromPipeline) { 'true (ByValue)' } else { 'false' }
        $pos = if ($attr.Position -ge 0) { $attr.Position } else { 'named' }
        $globbing = [bool]($p.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] })
        [void]$sb.AppendLine("<command:parameter required=`"$($attr.Mandatory.ToString().ToLower())`" globbing=`"$($globbing.ToString().ToLower())`" pipelineInput=`"$pipeline`" position=`"$pos`"><maml:name>$($p.Name)</maml:name><maml:description>$(Para $text)</maml:description><command:parameterValue required=`"true`">$(X (TypeName $p.ParameterType))</command:parameterValue><dev:type><maml:name>$(X (FullTypeName $p.ParameterType))</maml:name></dev:type></command:parameter>")
    }
    [void]$sb.AppendLine('</command:parameters>')
    # INPUTS: what the pipeline binds, by value or by property name (Get-VM objects bind their Name, for example).
    $inputs = foreach ($p in $cmd.Parameters.Values | Where-Object Name -NotIn $common) {
        $attrs = @($p.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] })
        $how = @()
        if ($attrs | Where-Object ValueFromPipeline) { $how += 'by value' }
        if ($attrs | Where-Object ValueFromPipelineByPropertyName) { $how += 'by property name' }
        if ($how) {
            $aliases = @($p.Aliases | Where-Object { $_ })
            $names = if ($aliases) { "$($p.Name) (or $($aliases -join ', '))" } else { $p.Name }
            "<command:inputType><dev:type><maml:name>$(X (FullTypeName $p.ParameterType))</maml:name></dev:type><maml:description><maml:para>$(X "-$names, $($how -join ' and ').")</maml:para></maml:description></command:inputType>"
        }
    }
    if (-not $inputs) { $inputs = '<command:inputType><dev:type><maml:name>None</maml:name></dev:type><maml:description><maml:para>Nothing binds from the pipeline.</maml:para></maml:description></command:inputType>' }
    [void]$sb.AppendLine("<command:inputTypes>$($inputs -join '')</command:inputTypes>")
    $outputs = $cmd.OutputType | ForEach-Object { "<command:returnValue><dev:type><maml:name>$(X $_.Name)</maml:name></dev:type></command:returnValue>" }
    if (-not $outputs) { $outputs = '<command:returnValue><dev:type><maml:name>None</maml:name></dev:type></command:returnValue>' }
    [void]$sb.AppendLine("<command:returnValues>$($outputs -join '')</command:returnValues>")
    [void]$sb.AppendLine('<command:examples>')
    $i = 0
    foreach ($ex in $h.Examples) {
        $i++
        [void]$sb.AppendLine("<command:example><maml:title>-------------------------- Example $i`: $(X $ex.Title) --------------------------</maml:title><dev:code>$(X $ex.Code)</dev:code><dev:remarks>$(Para $ex.Remarks)</dev:remarks></command:example>")
    }
    [void]$sb.AppendLine('</command:examples>')
    [void]$sb.AppendLine('<command:relatedLinks><maml:navigationLink><maml:linkText>about_VmCheckpoint</maml:linkText></maml:navigationLink></command:relatedLinks>')
    [void]$sb.AppendLine('</command:command>')
}
[void]$sb.AppendLine('</helpItems>')
$target = Join-Path $ModulePath 'en-US/VmCheckpoint.PowerShell.dll-Help.xml'
[System.IO.File]::WriteAllText($target, $sb.ToString())
([xml](Get-Content -Raw $target)) | Out-Null  # well-formed, or the build fails
