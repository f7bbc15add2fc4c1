# Windows / PowerShell counterpart of build.sh: build, test, bench, demo.
param([Parameter(Position = 0)][string]$Verb = "build", [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest)
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot
$env:DOTNET_CLI_TELEMETRY_OPTOUT = "1"; $env:DOTNET_NOLOGO = "1"

function Invoke-Build {
    if (-not (Get-Command dotnet -ErrorAction SilentlyContinue)) { throw "the .NET 10 SDK is not installed (dotnet not on PATH)" }
    dotnet restore Engine.sln --verbosity quiet; if ($LASTEXITCODE) { exit $LASTEXITCODE }
    dotnet build Engine.sln -c Release --no-restore --verbosity quiet -nologo; if ($LASTEXITCODE) { exit $LASTEXITCODE }
}

switch ($Verb) {
    "build" { Invoke-Build }
    "test" {
        Invoke-Build
        dotnet test tests/Engine.Tests/Engine.Tests.csproj -c Release --no-build --verbosity quiet @Rest
        exit $LASTEXITCODE
    }
    "bench" {
        Invoke-Build
        # OpenBLAS is the SGEMM peer on Linux only; on Windows its benchmark reports the library as missing.
        $benchArgs = if ($Rest) { $Rest } else { @("--filter", "*") }
        dotnet run -c Release --no-build --project bench/Engine.Bench -- @benchArgs
        exit $LASTEXITCODE
    }
    "demo" {
        Invoke-Build
        dotnet run -c Release --no-build --project src/Cli -- demo @Rest
        exit $LASTEXITCODE
    }
    default { Write-Error "usage: ./build.ps1 [build|test|bench|demo]"; exit 2 }
}
