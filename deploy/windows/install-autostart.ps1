# callguard per-user autostart on Windows: a Run key under HKCU, so callguard starts in the
# agent's own desktop session at logon.
#
# Why not a Windows service: services run in session 0, which has no desktop. A service can
# neither show toast notifications nor play audio to the agent, so the 15/30-minute warnings and
# the recording notice would never reach them.
#
# Run as the agent (no elevation needed):
#   powershell -ExecutionPolicy Bypass -File install-autostart.ps1 [-Exe "C:\Program Files\callguard\callguard.exe"]
# Remove:
#   powershell -ExecutionPolicy Bypass -File install-autostart.ps1 -Remove
# For a whole fleet, deploy the same value through Group Policy Preferences (Registry item,
# HKCU\Software\Microsoft\Windows\CurrentVersion\Run, value "callguard").
# Evidence lives in %APPDATA%\callguard\data\evidence and is never removed by this script.
param(
    [string]$Exe = "$env:ProgramFiles\callguard\callguard.exe",
    [switch]$Remove
)
$ErrorActionPreference = 'Stop'
$key = 'HKCU:\Software\Microsoft\Windows\CurrentVersion\Run'

if ($Remove) {
    Remove-ItemProperty -Path $key -Name 'callguard' -ErrorAction SilentlyContinue
    Write-Output 'callguard: autostart removed (evidence left in place)'
    exit 0
}
if (-not (Test-Path -LiteralPath $Exe)) {
    Write-Error "callguard: $Exe does not exist; pass -Exe with the installed path"
    exit 1
}
Set-ItemProperty -Path $key -Name 'callguard' -Value ('"{0}" run' -f $Exe)
Write-Output "callguard: starts at logon from $Exe; check this workstation with: `"$Exe`" doctor"
