# VHDX as a first-class format: checkpoints of VHDX files made by qemu-img, restores to VHDX, and restores
# across formats (VHDX to qcow2 for KVM, qcow2 to VHDX for Hyper-V), all compared with qemu-img.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    $script:vhdx = Join-Path $work 'hv.vhdx'
    & qemu-img create -q -f vhdx -o subformat=dynamic,block_size=8M $vhdx ((40MB) + 512 * 3)
    Write-TestData -Path $vhdx -Format vhdx -Offsets 0, 9MB, (40MB + 1536 - 64KB) -Length 64KB -Seed 31
    $script:qcow = New-TestImage -Path (Join-Path $work 'kvm.qcow2') -Size 24MB -Offsets 0, 23MB -Seed 32
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'VHDX disks' {
    It 'checkpoints a dynamic VHDX, reading only the data of its present payload blocks' {
        $c = Invoke-VmCheckpoint -Name hyperv-vm -DiskPath $vhdx -Repository $repo
        $c.Disks[0].SourceFormat | Should -Be 'vhdx'
        $c.VirtualSize | Should -Be (40MB + 1536)
        # qemu-img makes three whole 8 MiB payload blocks present for three 64 KiB writes, the rest of each a hole of
        # the file: neither the absent blocks nor those holes are read, only the 1 MiB blocks the writes touch
        # (0, 9, 39 and the 1536-byte tail).
        $c.ReadBytes | Should -Be (3MB + 1536)
    }

    It 'restores it as VHDX, qcow2 and raw, each identical to the source' {
        foreach ($format in 'vhdx', 'qcow2', 'raw') {
            $dest = Join-Path $work "hv-$format"
            $r = Restore-VmCheckpoint -Name hyperv-vm -Destination $dest -DiskFormat $format -Repository $repo
            $r.Path | Should -Be (Join-Path $dest "hv.$format")
            & qemu-img compare -f vhdx -F $format $vhdx $r.Path | Out-Null
            $LASTEXITCODE | Should -Be 0 -Because "the $format restore equals the VHDX"
            if ($format -ne 'raw') { Test-ImageChecks $r.Path | Should -BeTrue }
        }
    }

    It 'restores a qcow2 checkpoint as VHDX for Hyper-V' {
        Invoke-VmCheckpoint -Name kvm-vm -DiskPath $qcow -Repository $repo | Out-Null
        $r = Restore-VmCheckpoint -Name kvm-vm -Destination (Join-Path $work 'kvm-vhdx') -DiskFormat vhdx -Repository $repo
        & qemu-img compare -f qcow2 -F vhdx $qcow $r.Path | Out-Null
        $LASTEXITCODE | Should -Be 0
        Test-ImageChecks $r.Path | Should -BeTrue
    }

    It 'stores only changed blocks of a VHDX in the next checkpoint' {
        Write-TestData -Path $vhdx -Format vhdx -Offsets 20MB -Length 4KB -Seed 33
        $c = Invoke-VmCheckpoint -Name hyperv-vm -DiskPath $vhdx -Repository $repo
        $c.ChangedBytes | Should -Be 1MB
    }

    It 'gives InvalidData naming the file for a hostile VHDX, adding nothing' {
        $bad = Join-Path $work 'bad.vhdx'
        Copy-Item $vhdx $bad
        # Both headers (64 KiB and 128 KiB) lose their checksums.
        $fs = [IO.File]::OpenWrite($bad)
        foreach ($at in @((64KB + 4), (128KB + 4))) { $fs.Position = $at; $fs.Write([byte[]](1, 2, 3, 4), 0, 4) }
        $fs.Dispose()
        $before = Get-RepositoryFiles $repo
        $e = { Invoke-VmCheckpoint -Name bad -DiskPath $bad -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'InvalidData'
        $e.Exception.Message | Should -BeLike '*bad.vhdx*'
        Get-RepositoryFiles $repo | Should -Be $before
    }
}

Describe 'Differencing VHDX restores (a Hyper-V checkpoint chain)' {
    It 'writes the newer checkpoint as an .avhdx child holding only the blocks that differ from the older one' {
        $new, $old = Get-VmCheckpoint -Name hyperv-vm -Repository $repo | Select-Object -First 2
        $dest = Join-Path $work 'chain'
        $base = $old | Restore-VmCheckpoint -Destination $dest -DiskFormat vhdx
        $child = $new | Restore-VmCheckpoint -Destination $dest -DiskFormat vhdx -DifferencingParent $dest
        $child.Path | Should -Be (Join-Path $dest 'hv.avhdx')
        $child.DataBytes | Should -Be 1MB
        # The child read through its parent is the newer checkpoint: libvhdi reads differencing VHDX (qemu-img does not).
        $flat = Join-Path $work 'chain-flat.raw'
        & /usr/bin/python3 -c @'
import pyvhdi, sys
child = pyvhdi.file(); child.open(sys.argv[1])
parent = pyvhdi.file(); parent.open(sys.argv[2])
child.set_parent(parent)
with open(sys.argv[3], "wb") as out:
    size = child.get_media_size(); pos = 0
    while pos < size:
        n = min(1 << 20, size - pos); out.write(child.read_buffer_at_offset(n, pos)); pos += n
'@ $child.Path $base.Path $flat
        $LASTEXITCODE | Should -Be 0
        & qemu-img compare -f raw -F vhdx $flat $vhdx | Out-Null
        $LASTEXITCODE | Should -Be 0
        [long](& du -B1 $child.Path).Split("`t")[0] | Should -BeLessThan 12MB   # allocated: the child is sparse
    }
}
