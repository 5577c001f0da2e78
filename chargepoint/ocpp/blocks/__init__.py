"""The OCPP functional blocks the station core dispatches to (sans-I/O).

One module per block (OCPP 2.0.1 Part 2 functional blocks), each a class that
holds the block's state and talks to the core through
:class:`chargepoint.ocpp.outbox.Outbox`:

==============================  ===================================================
:mod:`.provisioning`            B: GetVariables, SetVariables, GetBaseReport, Reset,
                                SetNetworkProfile
:mod:`.authorization_block`     C/D: Authorize, cache, local list (the data
                                structures are :mod:`chargepoint.ocpp.authorization`)
:mod:`.availability`            G: connector status, ChangeAvailability,
                                UnlockConnector, faults (NotifyEvent)
:mod:`.transactions_block`      E/J: TransactionEvent, TxStart/StopPoint, meter
                                values, clock-aligned data, RequestStart/Stop,
                                GetTransactionStatus (the payloads are
                                :mod:`chargepoint.ocpp.transactions`)
:mod:`.security`                A/M: certificates, SignCertificate, security events
:mod:`.smart_charging`          K: charging profiles, composite schedules, the limit
                                each EVSE gets, NotifyEVChargingNeeds/Schedule
                                (payloads in :mod:`.ev_charging_needs`)
:mod:`.firmware`                L: UpdateFirmware, FirmwareStatusNotification
:mod:`.diagnostics`             N: GetLog, LogStatusNotification, CustomerInformation
:mod:`.monitoring`              N: variable monitors (SetVariableMonitoring, Clear...,
                                SetMonitoringBase/Level, GetMonitoringReport) and
                                their NotifyEvents
==============================  ===================================================

Adding a block: a module with a :class:`~chargepoint.ocpp.outbox.Block` subclass,
constructed in ``OcppStation.__init__`` and added to its ``_blocks`` (which merges
its ``handlers()`` into the dispatch table and calls its hooks).
"""
