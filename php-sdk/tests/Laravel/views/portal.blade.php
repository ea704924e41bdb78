@flag('lv_portal')
<p>new portal</p>
@else
<p>old portal</p>
@endflag
@flag('lv_portal', 42)
<p>pilot sees it</p>
@endflag
