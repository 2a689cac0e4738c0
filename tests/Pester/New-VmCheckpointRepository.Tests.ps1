BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'New-VmCheckpointRepository' {
    It 'creates a repository that the other cmdlets open' {
        $repo = Join-Path $work 'r1'
        $r = New-VmCheckpointRepository -Path $repo
        $r.Path | Should -Be $repo
        $r.BlockSize | Should -Be 1MB
        Test-Path (Join-Path $repo 'vmcheckpoint-repository.json') | Should -BeTrue
        @(Get-VmCheckpoint -Repository $repo).Count | Should -Be 0
    }

    It 'takes a chosen block size' {
        $r = New-VmCheckpointRepository -Path (Join-Path $work 'r2') -BlockSize 256KB
        $r.BlockSize | Should -Be 256KB
    }

    It 'refuses a block size that is not a power of two' {
        $e = { New-VmCheckpointRepository -Path (Join-Path $work 'r3') -BlockSize 300000 -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        Test-Path (Join-Path $work 'r3') | Should -BeFalse
    }

    It 'refuses a folder that already holds a repository or other files' {
        $repo = Join-Path $work 'r4'
        New-VmCheckpointRepository -Path $repo | Out-Null
        { New-VmCheckpointRepository -Path $repo -ErrorAction Stop } | Should -Throw '*already holds*'
        $other = Join-Path $work 'r5'
        New-Item -ItemType Directory $other | Out-Null
        Set-Content (Join-Path $other 'keep.txt') 'precious'
        { New-VmCheckpointRepository -Path $other -ErrorAction Stop } | Should -Throw '*not empty*'
        Get-Content (Join-Path $other 'keep.txt') | Should -Be 'precious'
    }

    It 'creates nothing with -WhatIf' {
        New-VmCheckpointRepository -Path (Join-Path $work 'r6') -WhatIf
        Test-Path (Join-Path $work 'r6') | Should -BeFalse
    }

    It 'gives a clear error when pointed at a folder that is not a repository' {
        $e = { Get-VmCheckpoint -Repository (Join-Path $work 'nothing-here') -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ResourceUnavailable'
        $plain = Join-Path $work 'plain'
        New-Item -ItemType Directory $plain | Out-Null
        $e = { Get-VmCheckpoint -Repository $plain -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $e.Exception.Message | Should -BeLike '*not a VmCheckpoint repository*'
    }
}
